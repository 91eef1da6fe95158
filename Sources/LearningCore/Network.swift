/// Hidden-layer nonlinearity of an MLP.
public enum Activation: String, Sendable, Codable, CaseIterable {
    case relu
    case tanh
}

/// An MLP described by its layer widths, e.g. `784-256-256-10`; `784-10` is logistic regression.
public struct ModelSpec: Sendable, Equatable, Codable, CustomStringConvertible {
    public var widths: [Int]
    public var activation: Activation

    public init(widths: [Int], activation: Activation = .relu) {
        self.widths = widths
        self.activation = activation
    }

    /// Parses `"784-256-256-10"` (optionally suffixed `:tanh` or `:relu`).
    public init(parsing text: String) throws(ModelSpecError) {
        var body = Substring(text)
        var activation = Activation.relu
        if let colon = text.firstIndex(of: ":") {
            let name = String(text[text.index(after: colon)...])
            guard let parsed = Activation(rawValue: name) else {
                throw ModelSpecError(text: text, reason: "unknown activation '\(name)' (use relu or tanh)")
            }
            activation = parsed
            body = text[..<colon]
        }
        let parts = body.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 2 else {
            throw ModelSpecError(text: text, reason: "need at least an input and an output width, e.g. 784-10")
        }
        var widths: [Int] = []
        for part in parts {
            guard let width = Int(part), width > 0 else {
                throw ModelSpecError(text: text, reason: "'\(part)' is not a positive integer width")
            }
            widths.append(width)
        }
        self.init(widths: widths, activation: activation)
    }

    public var description: String {
        widths.map(String.init).joined(separator: "-") + (activation == .relu ? "" : ":\(activation.rawValue)")
    }
    public var inputWidth: Int { widths[0] }
    public var classCount: Int { widths[widths.count - 1] }
}

public struct ModelSpecError: Error, CustomStringConvertible {
    public var text: String
    public var reason: String
    public var description: String { "model spec '\(text)': \(reason)" }
}

/// A feed-forward network: a sequence of layers over one flat parameter buffer.
public struct Network: Sendable {
    public let spec: ModelSpec
    public let layers: [any Layer]
    /// Offset of each layer's parameters in the flat buffer.
    public let layerOffsets: [Int]
    public let layout: ParameterLayout

    public init(spec: ModelSpec) {
        var layers: [any Layer] = []
        for index in 0..<(spec.widths.count - 1) {
            layers.append(Linear(inputs: spec.widths[index], outputs: spec.widths[index + 1]))
            if index < spec.widths.count - 2 {
                switch spec.activation {
                case .relu: layers.append(ReLU(width: spec.widths[index + 1]))
                case .tanh: layers.append(Tanh(width: spec.widths[index + 1]))
                }
            }
        }
        var layout = ParameterLayout()
        var offsets: [Int] = []
        for (index, layer) in layers.enumerated() {
            offsets.append(layout.count)
            for (name, shape) in layer.parameterShapes { layout.append("layers.\(index).\(name)", shape: shape) }
        }
        self.spec = spec
        self.layers = layers
        self.layerOffsets = offsets
        self.layout = layout
    }

    public var parameterCount: Int { layout.count }
    public var inputWidth: Int { spec.inputWidth }
    public var classCount: Int { spec.classCount }

    /// Seeded initialisation: He normal (std √(2/fan_in)) for weights feeding a ReLU, Glorot
    /// uniform (±√(6/(fan_in+fan_out))) otherwise; biases zero. He et al., ICCV 2015; Glorot and
    /// Bengio, AISTATS 2010.
    public func initialParameters(seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed, stream: 0x1_1417)
        var parameters = [Float](repeating: 0, count: parameterCount)
        for (index, layer) in layers.enumerated() {
            guard let linear = layer as? Linear else { continue }
            let feedsReLU = index + 1 < layers.count && layers[index + 1] is ReLU
            let fanIn = Double(linear.inputWidth)
            let fanOut = Double(linear.outputWidth)
            let start = layerOffsets[index]
            for i in start..<(start + linear.inputWidth * linear.outputWidth) {
                if feedsReLU {
                    parameters[i] = Float(generator.nextStandardNormal() * (2 / fanIn).squareRoot())
                } else {
                    let limit = (6 / (fanIn + fanOut)).squareRoot()
                    parameters[i] = Float((2 * generator.nextUnitDouble() - 1) * limit)
                }
            }
        }
        return parameters
    }
}
