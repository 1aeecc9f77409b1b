// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "orchestrator",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "apiserver", targets: ["apiserver"]),
        .executable(name: "ctl", targets: ["ctl"]),
        .executable(name: "bench", targets: ["bench"]),
        .executable(name: "scheduler", targets: ["scheduler"]),
        .executable(name: "controller-manager", targets: ["controller-manager"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", exact: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", exact: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client.git", exact: "1.37.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", exact: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
        .package(url: "https://github.com/apple/swift-asn1.git", exact: "1.7.4"),
        .package(url: "https://github.com/jpsim/Yams.git", exact: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", exact: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", exact: "2.13.0"),
    ],
    targets: [
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "API", dependencies: []),
        .target(name: "Store", dependencies: ["API", "CSQLite", .product(name: "Logging", package: "swift-log")]),
        .target(name: "PKI", dependencies: [
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Yams", package: "Yams"),
        ]),
        .target(name: "APIServer", dependencies: [
            "API", "Store", "PKI",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOFoundationCompat", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .target(name: "Client", dependencies: [
            "API", "PKI",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOFoundationCompat", package: "swift-nio"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Scheduler", dependencies: ["API", "Client", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Controllers", dependencies: ["API", "Client", "PKI", .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "scheduler", dependencies: [
            "Scheduler", "Client", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "controller-manager", dependencies: [
            "Controllers", "Client", "PKI", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "apiserver", dependencies: [
            "APIServer", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "ctl", dependencies: [
            "Client", "API", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ]),
        .executableTarget(name: "bench", dependencies: [
            "Client", "API", "APIServer", "Scheduler", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "APITests", dependencies: ["API"]),
        .testTarget(name: "StoreTests", dependencies: ["Store", "API"]),
        .testTarget(name: "IntegrationTests", dependencies: ["APIServer", "Client", "API", "PKI", "Store", "Scheduler", "Controllers"]),
        .testTarget(name: "SchedulerTests", dependencies: ["Scheduler", "API"]),
        .testTarget(name: "ControllerTests", dependencies: ["Controllers", "Client", "API"]),
    ]
)
