#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// Thin wrappers so pure targets need no Foundation.
@inline(__always) func _log(_ x: Double) -> Double { log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { cos(x) }
@inline(__always) func _pow(_ x: Double, _ y: Double) -> Double { pow(x, y) }
@inline(__always) func _expf(_ x: Float) -> Float { expf(x) }
@inline(__always) func _logf(_ x: Float) -> Float { logf(x) }
@inline(__always) func _tanhf(_ x: Float) -> Float { tanhf(x) }

/// Whether every value is finite (no NaN or ±Inf): a branch-free pass over the bit patterns (the
/// exponent field is all ones exactly for NaN and ±Inf), which the compiler vectorises, in blocks
/// so a non-finite value stops it early.
public func allFinite(_ values: UnsafeBufferPointer<Float>) -> Bool {
    guard let base = values.baseAddress else { return true }
    let bits = UnsafeRawPointer(base).assumingMemoryBound(to: UInt32.self)
    var start = 0
    while start < values.count {
        let end = min(start + 4_096, values.count)
        var flagged: UInt32 = 0
        for i in start..<end { flagged |= ((bits[i] & 0x7F80_0000) &+ 0x0080_0000) & 0x8000_0000 }
        if flagged != 0 { return false }
        start = end
    }
    return true
}
