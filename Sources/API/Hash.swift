// FNV-1a: the small stable (non-randomised) hash used for names derived from content:
// pod-template hashes, event names, hollow nodes' pod address ranges.
public enum FNV1a {
    public static func hash32<S: Sequence>(_ bytes: S, seed: UInt32 = 2166136261) -> UInt32 where S.Element == UInt8 {
        var h = seed
        for b in bytes { h = (h ^ UInt32(b)) &* 16777619 }
        return h
    }
    public static func hash64<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
        var h: UInt64 = 0xcbf29ce484222325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return h
    }
}
