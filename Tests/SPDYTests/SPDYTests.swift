import Foundation
import Testing
@testable import SPDY

// MARK: - Helpers

/// Small deterministic PRNG (SplitMix64) so chunking/fuzz runs are repeatable.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func h(_ name: String, _ value: String) -> SPDYHeader { SPDYHeader(name: name, value: value) }

/// Feeds everything at once and drains all complete frames.
func decodeAll(_ bytes: [UInt8], codec: SPDYCodec = SPDYCodec()) throws -> [SPDYFrame] {
    codec.feed(bytes)
    var frames: [SPDYFrame] = []
    while let frame = try codec.nextFrame() { frames.append(frame) }
    return frames
}

/// Feeds in chunks of the given sizes, draining after every chunk.
func decodeChunked(_ bytes: [UInt8], sizes: (inout SplitMix64) -> Int, seed: UInt64) throws -> [SPDYFrame] {
    var rng = SplitMix64(state: seed)
    let codec = SPDYCodec()
    var frames: [SPDYFrame] = []
    var i = 0
    while i < bytes.count {
        let n = min(max(1, sizes(&rng)), bytes.count - i)
        codec.feed(bytes[i..<(i + n)])
        i += n
        while let frame = try codec.nextFrame() { frames.append(frame) }
    }
    #expect(codec.bufferedByteCount == 0)
    return frames
}

let requestHeaders = [
    h(":method", "GET"), h(":path", "/v1.41/containers/json?all=1"), h(":version", "HTTP/1.1"),
    h(":host", "localhost"), h(":scheme", "https"), h("accept", "*/*"),
    h("user-agent", "spdy-swift/1.0"),
]

/// One of every frame type, with non-trivial field values.
let sampleFrames: [SPDYFrame] = [
    .synStream(streamID: 1, associatedTo: 0, priority: 3, flags: SPDYFlags.fin, headers: requestHeaders),
    .synStream(streamID: 0x7FFF_FFFF, associatedTo: 0x7FFF_FFFE, priority: 7,
               flags: SPDYFlags.fin | SPDYFlags.unidirectional, headers: []),
    .synReply(streamID: 1, flags: 0, headers: [h(":status", "200 OK"), h(":version", "HTTP/1.1"),
                                               h("set-cookie", "a=1\u{0}b=2"), h("x-empty", "")]),
    .rstStream(streamID: 3, status: SPDYStatus.cancel),
    .settings(flags: 0x01, entries: [SPDYSetting(flags: 0x01, id: 4, value: 100),
                                     SPDYSetting(id: 7, value: 1 << 20),
                                     SPDYSetting(flags: 0x02, id: 0xFF_FFFF, value: 0xFFFF_FFFF)]),
    .settings(flags: 0, entries: []),
    .ping(id: 0xDEAD_BEEF),
    .goAway(lastGoodStreamID: 41, status: 2),
    .headers(streamID: 1, flags: SPDYFlags.fin, headers: [h("x-trailer", "ünïcödé ✓")]),
    .windowUpdate(streamID: 5, delta: 0x7FFF_FFFF),
    .data(streamID: 1, flags: 0, payload: Array("hello, spdy".utf8)),
    .data(streamID: 9, flags: SPDYFlags.fin, payload: []),
    .unknownControl(type: 10, flags: 0x5A, payload: [1, 2, 3, 4, 5]),
    .unknownControl(type: 0x7FFF, flags: 0, payload: []),
]

func encodeAll(_ frames: [SPDYFrame], codec: SPDYCodec = SPDYCodec()) -> [UInt8] {
    frames.flatMap { codec.encode($0) }
}

func expectError(_ kind: SPDYError.Kind, containing text: String, _ body: () throws -> Void,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        try body()
        Issue.record("expected \(kind) error", sourceLocation: sourceLocation)
    } catch let error as SPDYError {
        #expect(error.kind == kind, sourceLocation: sourceLocation)
        #expect(error.description.contains(text), "\(error.description)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error type \(error)", sourceLocation: sourceLocation)
    }
}

// MARK: - Round trips

@Suite struct RoundTrip {
    @Test func everyFrameType() throws {
        let wire = encodeAll(sampleFrames)
        #expect(try decodeAll(wire) == sampleFrames)
    }

    @Test func eachFrameAlone() throws {
        for frame in sampleFrames {
            #expect(try decodeAll(SPDYCodec().encode(frame)) == [frame])
        }
    }

    @Test func wireLayoutOfSimpleFrames() {
        let codec = SPDYCodec()
        #expect(codec.encode(.ping(id: 7)) == [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 7])
        #expect(codec.encode(.rstStream(streamID: 1, status: SPDYStatus.frameTooLarge))
                == [0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 1, 0, 0, 0, 11])
        #expect(codec.encode(.data(streamID: 0x0102_0304, flags: SPDYFlags.fin, payload: [0xAA]))
                == [0x01, 0x02, 0x03, 0x04, 0x01, 0x00, 0x00, 0x01, 0xAA])
        #expect(codec.encode(.windowUpdate(streamID: 1, delta: 65536))
                == [0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 1, 0, 1, 0, 0])
        let syn = codec.encode(.synStream(streamID: 1, associatedTo: 0, priority: 5, flags: 1, headers: []))
        #expect(Array(syn[0..<8]) == [0x80, 0x03, 0x00, 0x01, 0x01, 0x00, 0x00, UInt8(syn.count - 8)])
        #expect(syn[16] == 5 << 5 && syn[17] == 0) // priority in the top 3 bits, then the slot
    }

    @Test func headerNamesAreLowercasedOnEncode() throws {
        let sent = SPDYFrame.synReply(streamID: 3, flags: 0, headers: [h("Content-Type", "Text/HTML"), h("X-ÄB", "v")])
        let got = try decodeAll(SPDYCodec().encode(sent))
        #expect(got == [.synReply(streamID: 3, flags: 0, headers: [h("content-type", "Text/HTML"), h("x-Äb", "v")])])
    }

    @Test func oneMebibyteDataFrame() throws {
        var rng = SplitMix64(state: 42)
        let payload = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let frame = SPDYFrame.data(streamID: 3, flags: SPDYFlags.fin, payload: payload)
        let wire = SPDYCodec().encode(frame)
        #expect(wire.count == 8 + (1 << 20))
        #expect(try decodeAll(wire) == [frame])
        // Also arriving as 16 KiB WebSocket-sized pieces.
        #expect(try decodeChunked(wire, sizes: { _ in 16 * 1024 }, seed: 1) == [frame])
    }

    @Test func manyFramesThroughOneDecoderKeepTheBufferSmall() throws {
        let encoder = SPDYCodec()
        var frames: [SPDYFrame] = []
        for i in 0..<2000 {
            frames.append(.headers(streamID: UInt32(2 * i + 1), flags: 0, headers: [h("x-seq", String(i))]))
            frames.append(.data(streamID: UInt32(2 * i + 1), flags: 0, payload: Array(repeating: UInt8(i & 0xFF), count: 3000)))
        }
        let wire = encodeAll(frames, codec: encoder)
        // Odd-sized chunks leave a partial frame buffered almost every time,
        // so only compaction keeps the buffer from growing to the whole stream.
        let decoder = SPDYCodec()
        var got: [SPDYFrame] = []
        var largest = 0
        var i = 0
        while i < wire.count {
            let n = min(1009, wire.count - i)
            decoder.feed(wire[i..<(i + n)])
            i += n
            while let frame = try decoder.nextFrame() { got.append(frame) }
            largest = max(largest, decoder.storedByteCount)
        }
        #expect(got == frames)
        #expect(decoder.bufferedByteCount == 0)
        #expect(largest < 16 * 1024, "buffer grew to \(largest) bytes for a \(wire.count)-byte stream")
    }
}

// MARK: - Shared compression context

@Suite struct SharedContext {
    let frames: [SPDYFrame] = [
        .synStream(streamID: 1, associatedTo: 0, priority: 0, flags: 0, headers: requestHeaders),
        .synStream(streamID: 3, associatedTo: 0, priority: 0, flags: 0, headers: requestHeaders),
        .headers(streamID: 1, flags: SPDYFlags.fin, headers: requestHeaders + [h("x-extra", "1")]),
    ]

    @Test func successiveBlocksDecodeInOrder() throws {
        let encoder = SPDYCodec()
        let wires = frames.map { encoder.encode($0) }
        // A repeated block costs far less the second time: the context is shared.
        #expect(wires[1].count < wires[0].count / 2, "sizes \(wires.map(\.count))")
        #expect(try decodeAll(wires.flatMap { $0 }) == frames)
    }

    @Test func laterBlockAloneDoesNotDecode() {
        let encoder = SPDYCodec()
        let wires = frames.map { encoder.encode($0) }
        // Without the first block, a fresh inflater sees no zlib header.
        expectError(.corruptHeaderBlock, containing: "SPDY: header block is corrupt") {
            _ = try decodeAll(wires[1])
        }
        expectError(.corruptHeaderBlock, containing: "header block is corrupt") {
            _ = try decodeAll(wires[0] + wires[2] + wires[1])
        }
    }

    @Test func dataFramesBetweenBlocksDoNotDisturbTheContext() throws {
        let encoder = SPDYCodec()
        let mixed: [SPDYFrame] = [frames[0], .data(streamID: 1, flags: 0, payload: [1, 2, 3]),
                                  .ping(id: 1), frames[1], .unknownControl(type: 10, flags: 0, payload: [9]), frames[2]]
        #expect(try decodeAll(encodeAll(mixed, codec: encoder)) == mixed)
    }
}

// MARK: - Chunking

@Suite struct Chunking {
    @Test func oneByteAtATime() throws {
        let wire = encodeAll(sampleFrames)
        #expect(try decodeChunked(wire, sizes: { _ in 1 }, seed: 0) == sampleFrames)
    }

    @Test func randomSplits() throws {
        let wire = encodeAll(sampleFrames + sampleFrames)
        for seed in UInt64(1)...20 {
            let got = try decodeChunked(wire, sizes: { Int.random(in: 1...97, using: &$0) }, seed: seed)
            #expect(got == sampleFrames + sampleFrames)
        }
    }
}

// MARK: - Garbage

@Suite struct Garbage {
    @Test func unsupportedVersion() {
        let codec = SPDYCodec()
        codec.feed([0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1])
        expectError(.unsupportedVersion, containing: "SPDY: unsupported version 2") { _ = try codec.nextFrame() }
        // The error is sticky: the stream cannot be trusted afterwards.
        codec.feed(SPDYCodec().encode(.ping(id: 1)))
        expectError(.unsupportedVersion, containing: "unsupported version 2") { _ = try codec.nextFrame() }
    }

    @Test func versionIsCheckedBeforeTheBodyArrives() {
        let codec = SPDYCodec()
        codec.feed([0x80, 0x04, 0x00, 0x01, 0x00, 0x00, 0x10, 0x00]) // body not sent yet
        expectError(.unsupportedVersion, containing: "unsupported version 4") { _ = try codec.nextFrame() }
    }

    @Test func corruptCompressedBlock() {
        // A SYN_REPLY whose block is not a zlib stream at all.
        let junk: [UInt8] = [0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC]
        var frame: [UInt8] = [0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, UInt8(4 + junk.count), 0, 0, 0, 1]
        frame += junk
        expectError(.corruptHeaderBlock, containing: "SPDY: header block is corrupt") { _ = try decodeAll(frame) }

        // A valid zlib header followed by damaged deflate data.
        var good = SPDYCodec().encode(sampleFrames[0])
        for i in 22..<good.count { good[i] ^= 0xA5 }
        expectError(.corruptHeaderBlock, containing: "header block is corrupt") { _ = try decodeAll(good) }
    }

    @Test func emptyOrTruncatedBlocks() {
        // SYN_REPLY with no block bytes at all.
        expectError(.corruptHeaderBlock, containing: "missing pair count") {
            _ = try decodeAll([0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1])
        }
        // Validly compressed blocks whose plain contents are malformed.
        var wire = rawBlockFrame(plain: [0, 0, 0, 5, 0, 0, 0, 1, 0x61, 0, 0, 0, 1, 0x62])
        expectError(.corruptHeaderBlock, containing: "cannot fit") { _ = try decodeAll(wire) }
        wire = rawBlockFrame(plain: [0, 0, 0, 1, 0, 0, 0, 1, 0x61, 0, 0, 0, 9, 0x62, 0, 0, 0, 0, 0, 0, 0])
        expectError(.corruptHeaderBlock, containing: "overruns") { _ = try decodeAll(wire) }
        wire = rawBlockFrame(plain: [0, 0, 0, 0, 0xFF])
        expectError(.corruptHeaderBlock, containing: "stray bytes") { _ = try decodeAll(wire) }
    }

    @Test func lengthOverTheLimit() {
        let codec = SPDYCodec(maxFrameSize: 1024)
        codec.feed([0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x4E, 0x20]) // data frame claiming 20000 bytes
        expectError(.frameTooLarge, containing: "SPDY: frame of 20000 bytes exceeds the limit of 1024 bytes") {
            _ = try codec.nextFrame()
        }
        let control = SPDYCodec(maxFrameSize: 16)
        control.feed(SPDYCodec().encode(.synStream(streamID: 1, associatedTo: 0, priority: 0, flags: 0, headers: requestHeaders)))
        expectError(.frameTooLarge, containing: "exceeds the limit of 16 bytes") { _ = try control.nextFrame() }
    }

    @Test func decompressionBombIsCapped() {
        let codec = SPDYCodec(maxFrameSize: 4096)
        let big = SPDYCodec().encode(.headers(streamID: 1, flags: 0, headers: [h("x", String(repeating: "a", count: 100_000))]))
        #expect(big.count < 4096) // small on the wire...
        expectError(.corruptHeaderBlock, containing: "inflates past the limit") { _ = try decodeAll(big, codec: codec) }
    }

    @Test func wrongFixedLengths() {
        expectError(.invalidFrame, containing: "RST_STREAM frame has length 4, expected 8") {
            _ = try decodeAll([0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1])
        }
        expectError(.invalidFrame, containing: "SETTINGS frame has length 12") {
            _ = try decodeAll([0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0C, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0])
        }
        expectError(.invalidFrame, containing: "SYN_STREAM frame has length 6") {
            _ = try decodeAll([0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0, 0, 0, 1, 0, 0])
        }
    }

    @Test func randomBytesNeverCrash() {
        var rng = SplitMix64(state: 7)
        var outcomes = [0, 0, 0] // frames, waiting, errors
        for _ in 0..<3000 {
            let codec = SPDYCodec(maxFrameSize: 1 << 16)
            let count = Int.random(in: 0...64, using: &rng)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if !bytes.isEmpty && Bool.random(using: &rng) { bytes[0] = 0x80 } // bias toward control frames
            if bytes.count > 1 && Bool.random(using: &rng) { bytes[1] = 0x03 }
            if bytes.count > 7 && Bool.random(using: &rng) { bytes[5] = 0; bytes[6] = 0; bytes[7] = UInt8(min(count - 8, 255)) }
            codec.feed(bytes)
            do {
                while try codec.nextFrame() != nil { outcomes[0] += 1 }
                outcomes[1] += 1
            } catch is SPDYError {
                outcomes[2] += 1
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
        #expect(outcomes[2] > 0 && outcomes[0] > 0)
    }

    @Test func bitFlippedValidStreamsNeverCrash() {
        let wire = encodeAll(sampleFrames)
        var rng = SplitMix64(state: 99)
        for _ in 0..<500 {
            var mutated = wire
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                mutated[Int.random(in: 0..<mutated.count, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
            }
            do { _ = try decodeAll(mutated, codec: SPDYCodec(maxFrameSize: 1 << 16)) } catch is SPDYError {} catch {
                Issue.record("unexpected \(error)")
            }
        }
    }
}

/// A SYN_REPLY (stream 1) carrying `plain` as its header block, compressed
/// with a fresh deflate stream of our own so the zlib layer is valid.
func rawBlockFrame(plain: [UInt8]) -> [UInt8] {
    var frame: [UInt8] = [0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 1]
    HeaderCompressor().compress(plain, appendingTo: &frame)
    let length = frame.count - 8
    frame[6] = UInt8(length >> 8)
    frame[7] = UInt8(length & 0xFF)
    return frame
}

// MARK: - Interop with a third-party zlib user

@Suite struct Interop {
    @Test func dictionaryShape() {
        #expect(spdyHeaderDictionary.count == 1423)
        #expect(Array(spdyHeaderDictionary.prefix(11)) == [0, 0, 0, 7] + Array("options".utf8))
        #expect(Array(spdyHeaderDictionary.suffix(6)) == Array("enq=0.".utf8))
    }

    /// Frames whose blocks Python's zlib compressed (python3 zlib.compressobj with zdict set to the SPDY/3 dictionary, flushed with Z_SYNC_FLUSH).
    @Test func decodesPythonZlibBlocks() throws {
        let expected: [SPDYFrame] = [
            .synStream(streamID: 1, associatedTo: 0, priority: 2, flags: SPDYFlags.fin, headers: [
                h(":method", "GET"), h(":path", "/containers/json"), h(":version", "HTTP/1.1"),
                h(":host", "localhost"), h(":scheme", "https"), h("user-agent", "python-zlib"),
            ]),
            .synReply(streamID: 1, flags: 0, headers: [
                h(":status", "200 OK"), h(":version", "HTTP/1.1"), h("content-type", "application/json"),
                h("set-cookie", "a=1\u{0}b=2"),
            ]),
            .headers(streamID: 1, flags: SPDYFlags.fin, headers: [
                h("x-trailer", "done"), h("content-type", "application/json"),
            ]),
        ]
        #expect(try decodeAll(pythonZlibFrames) == expected)
        #expect(try decodeChunked(pythonZlibFrames, sizes: { _ in 1 }, seed: 0) == expected)
    }

    /// The other direction: Python's zlib inflates the blocks our encoder made.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")))
    func pythonInflatesOurBlocks() throws {
        let encoder = SPDYCodec()
        let frames: [SPDYFrame] = [
            .synStream(streamID: 1, associatedTo: 0, priority: 0, flags: 0, headers: requestHeaders),
            .synReply(streamID: 1, flags: 0, headers: [h(":status", "200 OK")]),
            .headers(streamID: 1, flags: 0, headers: requestHeaders),
        ]
        // Strip each frame's fixed fields, keeping only the compressed block.
        let blocks = frames.map { frame -> [UInt8] in
            let wire = encoder.encode(frame)
            if case .synStream = frame { return Array(wire[18...]) }
            return Array(wire[12...])
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("spdy-interop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(spdyHeaderDictionary).write(to: dir.appendingPathComponent("dict"))
        try blocks.map { $0.map { String(format: "%02x", $0) }.joined() }.joined(separator: "\n")
            .write(to: dir.appendingPathComponent("blocks"), atomically: true, encoding: .utf8)

        // One decompressobj for all blocks, like any SPDY peer; print each plain block in hex.
        let script = """
        import sys, zlib
        d = open(sys.argv[1] + '/dict', 'rb').read()
        z = zlib.decompressobj(zdict=d)
        for line in open(sys.argv[1] + '/blocks').read().split():
            print(z.decompress(bytes.fromhex(line)).hex())
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script, dir.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)

        let plains = String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
        let expectedPlains = frames.map { frame -> String in
            switch frame {
            case let .synStream(_, _, _, _, headers), let .synReply(_, _, headers), let .headers(_, _, headers):
                return plainBlock(headers).map { String(format: "%02x", $0) }.joined()
            default:
                return ""
            }
        }
        #expect(plains == expectedPlains)
    }
}

/// Reference serialization of an uncompressed header block.
func plainBlock(_ headers: [SPDYHeader]) -> [UInt8] {
    func be32(_ n: Int) -> [UInt8] { [UInt8(n >> 24 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] }
    var out = be32(headers.count)
    for header in headers {
        let name = Array(header.name.lowercased().utf8), value = Array(header.value.utf8)
        out += be32(name.count) + name + be32(value.count) + value
    }
    return out
}
