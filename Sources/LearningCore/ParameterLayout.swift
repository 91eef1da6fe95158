/// What a slice of the parameter buffer is for.
public enum ParameterRole: String, Sendable, Codable {
    /// Trained by gradient steps and averaged by gossip.
    case trainable
    /// Carried with the model but not trained (e.g. batch-norm running statistics).
    case state
}

/// One named, contiguous slice of a flat parameter buffer.
public struct ParameterSlice: Sendable, Equatable, Codable {
    public var name: String
    public var offset: Int
    public var shape: [Int]
    public var role: ParameterRole
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
}

/// The named layout of a flat Float32 parameter buffer, in the style of mlx-swift's dotted keys:
/// `"layers.0.weight"`, `"layers.0.bias"`, ... A whole model is one contiguous buffer, so it travels
/// as one message and averaging is one BLAS call.
public struct ParameterLayout: Sendable, Equatable, Codable {
    public private(set) var slices: [ParameterSlice] = []
    public private(set) var count: Int = 0

    public init() {}

    public mutating func append(_ name: String, shape: [Int], role: ParameterRole = .trainable) {
        precondition(!slices.contains { $0.name == name }, "duplicate parameter name \(name)")
        let slice = ParameterSlice(name: name, offset: count, shape: shape, role: role)
        slices.append(slice)
        count += slice.count
    }

    public subscript(name: String) -> ParameterSlice? { slices.first { $0.name == name } }
}
