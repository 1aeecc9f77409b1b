// Kubernetes' remote command stream protocol over WebSocket (exec and attach):
// v4.channel.k8s.io and v5.channel.k8s.io. Each binary message starts with a channel byte:
// 0 stdin, 1 stdout, 2 stderr, 3 error (a final meta/v1 Status as JSON), 4 resize
// ({"Width":W,"Height":H}); v5 adds 255, "close": its one payload byte names the channel the
// client will send no more on (stdin's end).
import Foundation

/// A boolean query parameter as Kubernetes parses it (Go's strconv.ParseBool: 1, t, T, TRUE, true, True).
public func goBool(_ v: String?) -> Bool { ["1", "t", "T", "TRUE", "true", "True"].contains(v ?? "") }

public enum RemoteCommand {
    public static let v5 = "v5.channel.k8s.io"
    public static let v4 = "v4.channel.k8s.io"
    /// What we speak, best first.
    public static let protocols = [v5, v4]

    public static let stdin: UInt8 = 0
    public static let stdout: UInt8 = 1
    public static let stderr: UInt8 = 2
    public static let error: UInt8 = 3
    public static let resize: UInt8 = 4
    public static let close: UInt8 = 255

    /// The protocol to answer with, from a Sec-WebSocket-Protocol header ("a, b, c"); nil if none is ours.
    public static func negotiate(_ offered: String?) -> String? {
        let list = (offered ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return protocols.first { list.contains($0) }
    }

    /// The Status that ends a session: success, or the exit code kubectl turns into its own.
    public static func exitStatus(_ code: Int32, command: [String]) -> Data {
        if code == 0 { return Data(#"{"metadata":{},"status":"Success"}"#.utf8) }
        let cmd = "[" + command.joined(separator: " ") + "]"
        var s = Status(status: "Failure", message: "command terminated with non-zero exit code: error executing command \(cmd), exit code \(code)",
                       reason: "NonZeroExitCode", code: 0)
        s.details = StatusDetails(causes: [StatusCause(reason: "ExitCode", message: "\(code)")])
        return s.kubernetesJSON()
    }

    /// A Status for a session that could not run (no such container, the runtime refused, ...).
    public static func failureStatus(_ message: String) -> Data {
        Status(status: "Failure", message: message, reason: "InternalError", code: 500).kubernetesJSON()
    }

    /// A terminal size from a resize message, nil if malformed.
    public static func parseResize(_ payload: some Collection<UInt8>) -> (width: UInt16, height: UInt16)? {
        guard let v = try? JSONValue.parse(Data(payload)), let w = v["Width"]?.intValue, let h = v["Height"]?.intValue,
              (0...Int64(UInt16.max)).contains(w), (0...Int64(UInt16.max)).contains(h) else { return nil }
        return (UInt16(w), UInt16(h))
    }

    /// The exec options of a request's query: repeated `command`, and stdin/stdout/stderr/tty flags
    /// (Go's boolean spellings).
    public struct Options: Sendable, Equatable {
        public var command: [String]
        public var container: String?
        public var stdin: Bool
        public var stdout: Bool
        public var stderr: Bool
        public var tty: Bool
        public init(command: [String], container: String? = nil, stdin: Bool = false, stdout: Bool = true, stderr: Bool = true, tty: Bool = false) {
            self.command = command; self.container = container; self.stdin = stdin; self.stdout = stdout; self.stderr = stderr; self.tty = tty
        }

        /// The query pairs of a request target as Go's url.Values reads them: `+` is a space.
        public static func queryPairs(_ comps: URLComponents) -> [(String, String)] {
            (comps.percentEncodedQueryItems ?? []).map { item in
                func decode(_ s: String) -> String {
                    let spaced = s.replacingOccurrences(of: "+", with: "%20")
                    return spaced.removingPercentEncoding ?? s
                }
                return (decode(item.name), decode(item.value ?? ""))
            }
        }

        public static func parse(query: [(String, String)]) -> Options {
            func bool(_ k: String, _ d: Bool) -> Bool {
                guard let v = query.last(where: { $0.0 == k })?.1 else { return d }
                return goBool(v)
            }
            var o = Options(command: query.filter { $0.0 == "command" }.map(\.1))
            o.container = query.last { $0.0 == "container" }?.1
            o.stdin = bool("stdin", false); o.stdout = bool("stdout", true); o.stderr = bool("stderr", true); o.tty = bool("tty", false)
            // With a TTY, stderr is joined to stdout (as Kubernetes does).
            if o.tty { o.stderr = false }
            return o
        }

        /// The same options as a query string, for the agent.
        public var query: String {
            var parts = command.map { "command=\(Self.escape($0))" }
            if let container { parts.append("container=\(Self.escape(container))") }
            parts += ["stdin=\(stdin)", "stdout=\(stdout)", "stderr=\(stderr)", "tty=\(tty)"]
            return parts.joined(separator: "&")
        }
        public static func escape(_ s: String) -> String {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
        }
    }
}

/// The agent's port-forward WebSocket (apiserver to agent, one per forwarded connection): binary
/// messages are the connection's bytes; this text message says the client finished sending; any
/// other text from the agent is why the connection failed.
public enum PortForwardWire {
    public static let endOfInput = "eof"
}

/// Between the apiserver and an agent, on every exec, attach and port-forward WebSocket.
public enum AgentStream {
    /// The apiserver's first message, sent once its side of the upgrade is done; the agent writes
    /// nothing before it has arrived (a WebSocket client can lose frames that reach it while it is
    /// still finishing the upgrade).
    public static let start = "start"
}
