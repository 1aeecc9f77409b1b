// A self-contained SPDY/3.1 frame codec: framing plus zlib header-block
// compression, written against the SPDY/3.1 draft wire format.

import CZlib

// MARK: - Public model

/// One name/value pair of a SPDY header block.
///
/// Names are lowercased (ASCII) when encoded. SPDY carries several values of
/// one name as a single value with the parts separated by NUL (0x00); this
/// type keeps that joined string as-is in both directions.
public struct SPDYHeader: Equatable, Sendable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// One entry of a SETTINGS frame. `id` is a 24-bit value on the wire.
public struct SPDYSetting: Equatable, Sendable {
    public var flags: UInt8
    public var id: UInt32
    public var value: UInt32

    public init(flags: UInt8 = 0, id: UInt32, value: UInt32) {
        self.flags = flags
        self.id = id
        self.value = value
    }
}

/// A decoded (or to-be-encoded) SPDY/3.1 frame. Stream ids are 31-bit and
/// priorities 3-bit; extra high bits are dropped when encoding.
public enum SPDYFrame: Equatable, Sendable {
    case synStream(streamID: UInt32, associatedTo: UInt32, priority: UInt8, flags: UInt8, headers: [SPDYHeader])
    case synReply(streamID: UInt32, flags: UInt8, headers: [SPDYHeader])
    case rstStream(streamID: UInt32, status: UInt32)
    case settings(flags: UInt8, entries: [SPDYSetting])
    case ping(id: UInt32)
    case goAway(lastGoodStreamID: UInt32, status: UInt32)
    case headers(streamID: UInt32, flags: UInt8, headers: [SPDYHeader])
    case windowUpdate(streamID: UInt32, delta: UInt32)
    case data(streamID: UInt32, flags: UInt8, payload: [UInt8])
    /// A version-3 control frame of a type this codec does not know
    /// (e.g. the retired CREDENTIAL frame). Returned so callers can ignore it;
    /// it never touches the header compression state.
    case unknownControl(type: UInt16, flags: UInt8, payload: [UInt8])
}

/// Frame flag bits.
public enum SPDYFlags {
    public static let fin: UInt8 = 0x01
    public static let unidirectional: UInt8 = 0x02
}

/// RST_STREAM status codes.
public enum SPDYStatus {
    public static let protocolError: UInt32 = 1
    public static let invalidStream: UInt32 = 2
    public static let refusedStream: UInt32 = 3
    public static let unsupportedVersion: UInt32 = 4
    public static let cancel: UInt32 = 5
    public static let internalError: UInt32 = 6
    public static let flowControlError: UInt32 = 7
    public static let streamInUse: UInt32 = 8
    public static let streamAlreadyClosed: UInt32 = 9
    public static let frameTooLarge: UInt32 = 11
}

/// Raised by `SPDYCodec.nextFrame()` when the input cannot be a valid
/// SPDY/3.1 byte stream. After one of these the session is unusable.
public struct SPDYError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case unsupportedVersion
        case corruptHeaderBlock
        case frameTooLarge
        case invalidFrame
    }

    public let kind: Kind
    public let description: String

    public init(kind: Kind, description: String) {
        self.kind = kind
        self.description = description
    }

    static func unsupportedVersion(_ version: UInt16) -> SPDYError {
        SPDYError(kind: .unsupportedVersion, description: "SPDY: unsupported version \(version)")
    }

    static func corrupt(_ detail: String? = nil) -> SPDYError {
        let suffix = detail.map { " (\($0))" } ?? ""
        return SPDYError(kind: .corruptHeaderBlock, description: "SPDY: header block is corrupt\(suffix)")
    }

    static func tooLarge(_ size: Int, limit: Int) -> SPDYError {
        SPDYError(kind: .frameTooLarge,
                  description: "SPDY: frame of \(size) bytes exceeds the limit of \(limit) bytes")
    }

    static func invalid(_ detail: String) -> SPDYError {
        SPDYError(kind: .invalidFrame, description: "SPDY: \(detail)")
    }
}

// MARK: - Codec

/// One session's codec: encodes outgoing frames and decodes incoming bytes.
///
/// SPDY compresses every header block of a direction with a single zlib
/// stream that lives as long as the session, primed with the SPDY/3
/// dictionary. So the encoder keeps one deflate context (each block ends with
/// a sync flush) and the decoder keeps one inflate context; frames must be
/// encoded and decoded in wire order.
///
/// Not thread-safe: use from one owner at a time.
public final class SPDYCodec {
    /// Largest accepted frame payload (the 24-bit length field), and the cap
    /// on a decompressed header block.
    public let maxFrameSize: Int

    // Received bytes; everything before `readIndex` has been consumed.
    private var buffer: [UInt8] = []
    private var readIndex = 0
    // Set by the first decode error; later calls report it again.
    private var failure: SPDYError?

    // zlib contexts, created on first use (a deflate context is ~256 KiB).
    private var compressor: HeaderCompressor?
    private var decompressor: HeaderDecompressor?
    // Reused scratch space for serializing an uncompressed header block.
    private var plainBlock: [UInt8] = []

    public init(maxFrameSize: Int = 16 << 20) {
        self.maxFrameSize = maxFrameSize
    }

    /// Bytes fed but not yet returned as frames.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Bytes held in the receive buffer, consumed ones included (for tests).
    var storedByteCount: Int { buffer.count }

    // MARK: Encoding

    /// Returns the complete wire bytes of `frame` (8-byte header included).
    /// Header-carrying frames advance this session's compression context, so
    /// send the results in the order they were encoded.
    ///
    /// A payload that does not fit the 24-bit length field is a programming
    /// error and stops the process.
    public func encode(_ frame: SPDYFrame) -> [UInt8] {
        var out: [UInt8] = []
        switch frame {
        case let .synStream(streamID, associatedTo, priority, flags, headers):
            out.reserveCapacity(64)
            out.appendControlHeader(type: ControlType.synStream, flags: flags)
            out.appendUInt32(streamID & streamIDMask)
            out.appendUInt32(associatedTo & streamIDMask)
            out.append((priority & 0x07) << 5)
            out.append(0) // credential slot, unused in 3.1
            appendCompressedBlock(headers, to: &out)
        case let .synReply(streamID, flags, headers):
            out.reserveCapacity(64)
            out.appendControlHeader(type: ControlType.synReply, flags: flags)
            out.appendUInt32(streamID & streamIDMask)
            appendCompressedBlock(headers, to: &out)
        case let .rstStream(streamID, status):
            out.appendControlHeader(type: ControlType.rstStream, flags: 0)
            out.appendUInt32(streamID & streamIDMask)
            out.appendUInt32(status)
        case let .settings(flags, entries):
            out.reserveCapacity(12 + 8 * entries.count)
            out.appendControlHeader(type: ControlType.settings, flags: flags)
            out.appendUInt32(UInt32(entries.count))
            for entry in entries {
                out.appendUInt32(UInt32(entry.flags) << 24 | (entry.id & 0x00FF_FFFF))
                out.appendUInt32(entry.value)
            }
        case let .ping(id):
            out.appendControlHeader(type: ControlType.ping, flags: 0)
            out.appendUInt32(id)
        case let .goAway(lastGoodStreamID, status):
            out.appendControlHeader(type: ControlType.goAway, flags: 0)
            out.appendUInt32(lastGoodStreamID & streamIDMask)
            out.appendUInt32(status)
        case let .headers(streamID, flags, headers):
            out.reserveCapacity(64)
            out.appendControlHeader(type: ControlType.headers, flags: flags)
            out.appendUInt32(streamID & streamIDMask)
            appendCompressedBlock(headers, to: &out)
        case let .windowUpdate(streamID, delta):
            out.appendControlHeader(type: ControlType.windowUpdate, flags: 0)
            out.appendUInt32(streamID & streamIDMask)
            out.appendUInt32(delta & streamIDMask)
        case let .data(streamID, flags, payload):
            precondition(payload.count <= maxLengthField,
                         "SPDY: data payload of \(payload.count) bytes does not fit in one frame")
            out.reserveCapacity(8 + payload.count)
            out.appendUInt32(streamID & streamIDMask) // C bit stays 0
            out.appendUInt32(UInt32(flags) << 24 | UInt32(payload.count))
            out.append(contentsOf: payload)
            return out
        case let .unknownControl(type, flags, payload):
            out.reserveCapacity(8 + payload.count)
            out.appendControlHeader(type: type, flags: flags)
            out.append(contentsOf: payload)
        }
        out.patchControlLength()
        return out
    }

    /// Serializes `headers` into an uncompressed block, then appends it to
    /// `out` through the session's deflate stream (sync-flushed).
    private func appendCompressedBlock(_ headers: [SPDYHeader], to out: inout [UInt8]) {
        plainBlock.removeAll(keepingCapacity: true)
        plainBlock.appendUInt32(UInt32(headers.count))
        for header in headers {
            let nameStart = plainBlock.count
            plainBlock.appendUInt32(0)
            for byte in header.name.utf8 {
                // ASCII lowercase only; SPDY header names are ASCII tokens.
                plainBlock.append(byte &- 0x41 < 26 ? byte | 0x20 : byte)
            }
            plainBlock.patchUInt32(UInt32(plainBlock.count - nameStart - 4), at: nameStart)
            let valueStart = plainBlock.count
            plainBlock.appendUInt32(0)
            plainBlock.append(contentsOf: header.value.utf8)
            plainBlock.patchUInt32(UInt32(plainBlock.count - valueStart - 4), at: valueStart)
        }
        if compressor == nil { compressor = HeaderCompressor() }
        compressor!.compress(plainBlock, appendingTo: &out)
    }

    // MARK: Decoding

    /// Appends received bytes. Chunk boundaries do not matter.
    public func feed(_ bytes: some Collection<UInt8>) {
        // Drop consumed bytes once they make up at least half the buffer, so
        // each byte is moved at most a constant number of times overall.
        if readIndex >= 4096 && readIndex * 2 >= buffer.count {
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Returns the next complete frame, or nil if more bytes are needed.
    /// Throws `SPDYError` for input that is not valid SPDY/3.1; the error is
    /// sticky because the stream (and its zlib context) cannot be resynchronized.
    public func nextFrame() throws -> SPDYFrame? {
        if let failure { throw failure }
        do {
            return try decodeNext()
        } catch let error as SPDYError {
            failure = error
            throw error
        }
    }

    private func decodeNext() throws -> SPDYFrame? {
        guard buffer.count - readIndex >= 8 else { return nil }
        let word0 = buffer.uint32(at: readIndex)
        let word1 = buffer.uint32(at: readIndex + 4)
        let isControl = word0 & 0x8000_0000 != 0
        let flags = UInt8(truncatingIfNeeded: word1 >> 24)
        let length = Int(word1 & 0x00FF_FFFF)

        // Reject bad headers before waiting for the body.
        if isControl {
            let version = UInt16(truncatingIfNeeded: word0 >> 16) & 0x7FFF
            guard version == 3 else { throw SPDYError.unsupportedVersion(version) }
        }
        guard length <= maxFrameSize else { throw SPDYError.tooLarge(length, limit: maxFrameSize) }
        guard buffer.count - readIndex - 8 >= length else { return nil }

        let body = (readIndex + 8)..<(readIndex + 8 + length)
        let frame: SPDYFrame
        if isControl {
            frame = try decodeControl(type: UInt16(truncatingIfNeeded: word0), flags: flags, body: body)
        } else {
            frame = .data(streamID: word0 & streamIDMask, flags: flags, payload: Array(buffer[body]))
        }

        readIndex = body.upperBound
        if readIndex == buffer.count {
            // Everything consumed: reset without giving back the storage.
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        }
        return frame
    }

    private func decodeControl(type: UInt16, flags: UInt8, body: Range<Int>) throws -> SPDYFrame {
        let start = body.lowerBound
        let length = body.count

        func require(_ ok: Bool, _ name: String, _ expected: @autoclosure () -> String) throws {
            if !ok {
                throw SPDYError.invalid("\(name) frame has length \(length), expected \(expected())")
            }
        }

        switch type {
        case ControlType.synStream:
            try require(length >= 10, "SYN_STREAM", "at least 10")
            let headers = try decodeBlock(body.dropFirst(10))
            return .synStream(streamID: buffer.uint32(at: start) & streamIDMask,
                              associatedTo: buffer.uint32(at: start + 4) & streamIDMask,
                              priority: buffer[start + 8] >> 5,
                              flags: flags,
                              headers: headers)
        case ControlType.synReply:
            try require(length >= 4, "SYN_REPLY", "at least 4")
            let headers = try decodeBlock(body.dropFirst(4))
            return .synReply(streamID: buffer.uint32(at: start) & streamIDMask, flags: flags, headers: headers)
        case ControlType.rstStream:
            try require(length == 8, "RST_STREAM", "8")
            return .rstStream(streamID: buffer.uint32(at: start) & streamIDMask,
                              status: buffer.uint32(at: start + 4))
        case ControlType.settings:
            try require(length >= 4, "SETTINGS", "at least 4")
            let count = Int(buffer.uint32(at: start))
            try require(count <= (length - 4) / 8 && length == 4 + 8 * count, "SETTINGS", "\(4 + 8 * count) for \(count) entries")
            var entries: [SPDYSetting] = []
            entries.reserveCapacity(count)
            var at = start + 4
            for _ in 0..<count {
                let flagsAndID = buffer.uint32(at: at)
                entries.append(SPDYSetting(flags: UInt8(truncatingIfNeeded: flagsAndID >> 24),
                                           id: flagsAndID & 0x00FF_FFFF,
                                           value: buffer.uint32(at: at + 4)))
                at += 8
            }
            return .settings(flags: flags, entries: entries)
        case ControlType.ping:
            try require(length == 4, "PING", "4")
            return .ping(id: buffer.uint32(at: start))
        case ControlType.goAway:
            try require(length == 8, "GOAWAY", "8")
            return .goAway(lastGoodStreamID: buffer.uint32(at: start) & streamIDMask,
                           status: buffer.uint32(at: start + 4))
        case ControlType.headers:
            try require(length >= 4, "HEADERS", "at least 4")
            let headers = try decodeBlock(body.dropFirst(4))
            return .headers(streamID: buffer.uint32(at: start) & streamIDMask, flags: flags, headers: headers)
        case ControlType.windowUpdate:
            try require(length == 8, "WINDOW_UPDATE", "8")
            return .windowUpdate(streamID: buffer.uint32(at: start) & streamIDMask,
                                 delta: buffer.uint32(at: start + 4) & streamIDMask)
        default:
            return .unknownControl(type: type, flags: flags, payload: Array(buffer[body]))
        }
    }

    /// Inflates the compressed block in `range` of the buffer (continuing the
    /// session's zlib stream) and parses the name/value pairs.
    private func decodeBlock(_ range: Range<Int>) throws -> [SPDYHeader] {
        if decompressor == nil { decompressor = HeaderDecompressor() }
        let inflater = decompressor!
        let limit = maxFrameSize
        let plain = try buffer.withUnsafeBufferPointer { all in
            try inflater.decompress(UnsafeBufferPointer(rebasing: all[range]), limit: limit)
        }
        return try parseHeaderBlock(plain)
    }
}

// MARK: - Header block parsing

/// Parses an uncompressed block: a 32-bit pair count, then for each pair a
/// 32-bit length + name and a 32-bit length + value. All bytes must be used.
private func parseHeaderBlock(_ block: [UInt8]) throws -> [SPDYHeader] {
    guard block.count >= 4 else { throw SPDYError.corrupt("missing pair count") }
    let count = Int(block.uint32(at: 0))
    // Each pair needs at least its two length fields.
    guard count <= (block.count - 4) / 8 else {
        throw SPDYError.corrupt("\(count) pairs cannot fit in \(block.count) bytes")
    }
    var pos = 4

    func field() throws -> String {
        guard block.count - pos >= 4 else { throw SPDYError.corrupt("truncated length field") }
        let size = Int(block.uint32(at: pos))
        pos += 4
        guard block.count - pos >= size else { throw SPDYError.corrupt("field of \(size) bytes overruns the block") }
        defer { pos += size }
        return String(decoding: block[pos..<(pos + size)], as: UTF8.self)
    }

    var headers: [SPDYHeader] = []
    headers.reserveCapacity(count)
    for _ in 0..<count {
        let name = try field()
        let value = try field()
        headers.append(SPDYHeader(name: name, value: value))
    }
    guard pos == block.count else { throw SPDYError.corrupt("\(block.count - pos) stray bytes after the last pair") }
    return headers
}

// MARK: - zlib wrappers

/// The session-long deflate stream for outgoing header blocks
/// (internal rather than private so tests can build odd blocks with it).
final class HeaderCompressor {
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    private var chunk = [UInt8](repeating: 0, count: 4096)

    init() {
        stream.initialize(to: z_stream())
        var rc = deflateInit_(stream, Z_DEFAULT_COMPRESSION, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        precondition(rc == Z_OK, "SPDY: deflateInit failed (\(rc))")
        // The dictionary must be installed before any data is compressed.
        rc = spdyHeaderDictionary.withUnsafeBufferPointer {
            deflateSetDictionary(stream, $0.baseAddress, UInt32($0.count))
        }
        precondition(rc == Z_OK, "SPDY: deflateSetDictionary failed (\(rc))")
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Compresses `input` and sync-flushes, appending everything produced.
    func compress(_ input: [UInt8], appendingTo out: inout [UInt8]) {
        input.withUnsafeBufferPointer { src in
            // zlib only reads through next_in.
            stream.pointee.next_in = UnsafeMutablePointer(mutating: src.baseAddress)
            stream.pointee.avail_in = UInt32(src.count)
            repeat {
                let produced = chunk.withUnsafeMutableBufferPointer { dst -> Int in
                    stream.pointee.next_out = dst.baseAddress
                    stream.pointee.avail_out = UInt32(dst.count)
                    let rc = deflate(stream, Z_SYNC_FLUSH)
                    // Z_BUF_ERROR only means "nothing left to do".
                    precondition(rc == Z_OK || rc == Z_BUF_ERROR, "SPDY: deflate failed (\(rc))")
                    return dst.count - Int(stream.pointee.avail_out)
                }
                out.append(contentsOf: chunk[0..<produced])
            } while stream.pointee.avail_out == 0
            stream.pointee.next_in = nil
            stream.pointee.next_out = nil
        }
    }
}

/// The session-long inflate stream for incoming header blocks.
private final class HeaderDecompressor {
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    private var chunk = [UInt8](repeating: 0, count: 4096)

    init() {
        stream.initialize(to: z_stream())
        let rc = inflateInit_(stream, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        precondition(rc == Z_OK, "SPDY: inflateInit failed (\(rc))")
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Feeds one frame's compressed bytes and returns all output they yield.
    func decompress(_ input: UnsafeBufferPointer<UInt8>, limit: Int) throws -> [UInt8] {
        guard !input.isEmpty else { return [] }
        defer {
            stream.pointee.next_in = nil
            stream.pointee.next_out = nil
        }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
        stream.pointee.avail_in = UInt32(input.count)
        var out: [UInt8] = []
        while true {
            var rc: Int32 = Z_OK
            let produced = chunk.withUnsafeMutableBufferPointer { dst -> Int in
                stream.pointee.next_out = dst.baseAddress
                stream.pointee.avail_out = UInt32(dst.count)
                rc = inflate(stream, Z_SYNC_FLUSH)
                return dst.count - Int(stream.pointee.avail_out)
            }
            out.append(contentsOf: chunk[0..<produced])
            if out.count > limit {
                throw SPDYError.corrupt("inflates past the limit of \(limit) bytes")
            }
            let inputLeft = stream.pointee.avail_in
            switch rc {
            case Z_OK:
                // Done once the input is used up and the output was not cut short.
                if inputLeft == 0 && stream.pointee.avail_out != 0 { return out }
            case Z_NEED_DICT:
                // Only ever asked for at the start of the session's stream.
                let set = spdyHeaderDictionary.withUnsafeBufferPointer {
                    inflateSetDictionary(stream, $0.baseAddress, UInt32($0.count))
                }
                guard set == Z_OK else { throw SPDYError.corrupt("stream expects a different dictionary") }
            case Z_BUF_ERROR where inputLeft == 0:
                return out // no more input and nothing pending
            case Z_STREAM_END:
                // The peer ended its zlib stream; nothing valid may follow it.
                guard inputLeft == 0 else { throw SPDYError.corrupt("data after the end of the zlib stream") }
                return out
            default:
                throw SPDYError.corrupt(zlibMessage(rc))
            }
        }
    }

    private func zlibMessage(_ rc: Int32) -> String {
        if let msg = stream.pointee.msg { return "zlib: " + String(cString: msg) }
        return "zlib error \(rc)"
    }
}

// MARK: - Wire helpers

private let streamIDMask: UInt32 = 0x7FFF_FFFF
private let maxLengthField = 0x00FF_FFFF

private enum ControlType {
    static let synStream: UInt16 = 1
    static let synReply: UInt16 = 2
    static let rstStream: UInt16 = 3
    static let settings: UInt16 = 4
    static let ping: UInt16 = 6
    static let goAway: UInt16 = 7
    static let headers: UInt16 = 8
    static let windowUpdate: UInt16 = 9
}

extension Array where Element == UInt8 {
    @inline(__always)
    fileprivate func uint32(at i: Int) -> UInt32 {
        UInt32(self[i]) << 24 | UInt32(self[i + 1]) << 16 | UInt32(self[i + 2]) << 8 | UInt32(self[i + 3])
    }

    @inline(__always)
    fileprivate mutating func appendUInt32(_ v: UInt32) {
        append(UInt8(truncatingIfNeeded: v >> 24))
        append(UInt8(truncatingIfNeeded: v >> 16))
        append(UInt8(truncatingIfNeeded: v >> 8))
        append(UInt8(truncatingIfNeeded: v))
    }

    fileprivate mutating func patchUInt32(_ v: UInt32, at i: Int) {
        self[i] = UInt8(truncatingIfNeeded: v >> 24)
        self[i + 1] = UInt8(truncatingIfNeeded: v >> 16)
        self[i + 2] = UInt8(truncatingIfNeeded: v >> 8)
        self[i + 3] = UInt8(truncatingIfNeeded: v)
    }

    /// C bit + version 3, type, flags, and a zero length patched in later.
    fileprivate mutating func appendControlHeader(type: UInt16, flags: UInt8) {
        appendUInt32(0x8003_0000 | UInt32(type))
        appendUInt32(UInt32(flags) << 24)
    }

    /// Writes the payload length (everything after the 8-byte header).
    fileprivate mutating func patchControlLength() {
        let length = count - 8
        precondition(length <= maxLengthField, "SPDY: control frame payload of \(length) bytes is too large")
        self[5] = UInt8(truncatingIfNeeded: length >> 16)
        self[6] = UInt8(truncatingIfNeeded: length >> 8)
        self[7] = UInt8(truncatingIfNeeded: length)
    }
}
