/// Hidden-layer nonlinearity of an MLP.
public enum Activation: String, Sendable, Codable, CaseIterable {
    case relu
    case tanh
}

/// The architecture of a model: an MLP such as `784-256-256-10` (optionally `:tanh`, `:bn` for
/// batch norm after each hidden linear layer), or a small CNN such as `cnn:28x28x1-16-32-10`
/// (per stage: 3×3 convolution with padding 1, batch norm unless `:nobn`, ReLU (or `:tanh`), 2×2 max pooling;
/// then a dense head to the classes). `cnn` alone is `cnn:28x28x1-16-32-10`.
public struct ModelSpec: Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Kind: String, Sendable, Codable {
        case mlp
        case cnn
    }

    public var kind: Kind
    /// MLP: every layer width, input first. CNN: [input width, classes].
    public var widths: [Int]
    public var activation: Activation
    /// Batch norm after each hidden linear layer (MLP) or convolution (CNN).
    public var batchNorm: Bool
    /// CNN: input image height, width and channels.
    public var imageShape: [Int]
    /// CNN: output channels of each convolution stage.
    public var convolutionChannels: [Int]

    public init(widths: [Int], activation: Activation = .relu, batchNorm: Bool = false) {
        kind = .mlp
        self.widths = widths
        self.activation = activation
        self.batchNorm = batchNorm
        imageShape = []
        convolutionChannels = []
    }

    /// A CNN on `height × width × channels` images.
    public init(
        convolutionalHeight height: Int, width: Int, channels: Int, convolutionChannels: [Int], classes: Int,
        batchNorm: Bool = true
    ) {
        kind = .cnn
        widths = [height * width * channels, classes]
        activation = .relu
        self.batchNorm = batchNorm
        imageShape = [height, width, channels]
        self.convolutionChannels = convolutionChannels
    }

    /// Parses the forms in the type's description.
    public init(parsing text: String) throws(ModelSpecError) {
        var pieces = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let head = pieces.removeFirst()
        if head == "cnn" {
            var body = "28x28x1-16-32-10"
            if let first = pieces.first, first.contains("x") { body = pieces.removeFirst() }
            var batchNorm = true
            var activation = Activation.relu
            for option in pieces {
                if let parsed = Activation(rawValue: option) {
                    activation = parsed
                } else if option == "nobn" || option == "bn" {
                    batchNorm = option == "bn"
                } else {
                    throw ModelSpecError(
                        text: text, reason: "unknown CNN option '\(option)' (use relu, tanh, bn or nobn)")
                }
            }
            let parts = body.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
            let shape = parts[0].split(separator: "x", omittingEmptySubsequences: false).compactMap { Int($0) }
            guard shape.count == 3, shape.allSatisfy({ $0 > 0 }) else {
                throw ModelSpecError(text: text, reason: "'\(parts[0])' is not an image shape HxWxC, e.g. 28x28x1")
            }
            guard parts.count >= 3 else {
                throw ModelSpecError(text: text, reason: "need conv channels and a class count, e.g. 28x28x1-16-32-10")
            }
            var numbers: [Int] = []
            for part in parts.dropFirst() {
                guard let value = Int(part), value > 0 else {
                    throw ModelSpecError(text: text, reason: "'\(part)' is not a positive integer")
                }
                numbers.append(value)
            }
            var (height, width) = (shape[0], shape[1])
            for _ in 0..<(numbers.count - 1) {
                guard height % 2 == 0, width % 2 == 0 else {
                    throw ModelSpecError(
                        text: text,
                        reason: "\(numbers.count - 1) pooling stages need the image sides divisible by 2 at each stage")
                }
                height /= 2
                width /= 2
            }
            self.init(
                convolutionalHeight: shape[0], width: shape[1], channels: shape[2],
                convolutionChannels: Array(numbers.dropLast()), classes: numbers.last!, batchNorm: batchNorm)
            self.activation = activation
            return
        }
        var activation = Activation.relu
        var batchNorm = false
        for option in pieces {
            if option == "bn" {
                batchNorm = true
            } else if let parsed = Activation(rawValue: option) {
                activation = parsed
            } else {
                throw ModelSpecError(text: text, reason: "unknown option '\(option)' (use relu, tanh or bn)")
            }
        }
        let parts = head.split(separator: "-", omittingEmptySubsequences: false)
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
        self.init(widths: widths, activation: activation, batchNorm: batchNorm)
    }

    public var description: String {
        switch kind {
        case .mlp:
            return widths.map(String.init).joined(separator: "-")
                + (activation == .relu ? "" : ":\(activation.rawValue)")
                + (batchNorm ? ":bn" : "")
        case .cnn:
            return "cnn:" + imageShape.map(String.init).joined(separator: "x") + "-"
                + (convolutionChannels + [classCount]).map(String.init).joined(separator: "-")
                + (activation == .relu ? "" : ":\(activation.rawValue)") + (batchNorm ? "" : ":nobn")
        }
    }
    public var inputWidth: Int { widths[0] }
    public var classCount: Int { widths[widths.count - 1] }

    private enum CodingKeys: String, CodingKey {
        case kind, widths, activation, batchNorm, imageShape, convolutionChannels
    }

    /// Run folders written before batch norm and CNNs existed decode as plain MLPs.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        kind = try container.decodeIfPresent(Kind.self, forKey: .kind) ?? .mlp
        widths = try container.decode([Int].self, forKey: .widths)
        activation = try container.decode(Activation.self, forKey: .activation)
        batchNorm = try container.decodeIfPresent(Bool.self, forKey: .batchNorm) ?? false
        imageShape = try container.decodeIfPresent([Int].self, forKey: .imageShape) ?? []
        convolutionChannels = try container.decodeIfPresent([Int].self, forKey: .convolutionChannels) ?? []
    }
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
        switch spec.kind {
        case .mlp:
            for index in 0..<(spec.widths.count - 1) {
                let width = spec.widths[index + 1]
                layers.append(Linear(inputs: spec.widths[index], outputs: width))
                guard index < spec.widths.count - 2 else { continue }
                if spec.batchNorm { layers.append(BatchNorm(channels: width, spatialSize: 1)) }
                switch spec.activation {
                case .relu: layers.append(ReLU(width: width))
                case .tanh: layers.append(Tanh(width: width))
                }
            }
        case .cnn:
            var (height, width, channels) = (spec.imageShape[0], spec.imageShape[1], spec.imageShape[2])
            for outputChannels in spec.convolutionChannels {
                layers.append(
                    Convolution2D(
                        inputChannels: channels, outputChannels: outputChannels, height: height, width: width,
                        kernelSize: 3, padding: 1))
                channels = outputChannels
                if spec.batchNorm { layers.append(BatchNorm(channels: channels, spatialSize: height * width)) }
                switch spec.activation {
                case .relu: layers.append(ReLU(width: channels * height * width))
                case .tanh: layers.append(Tanh(width: channels * height * width))
                }
                layers.append(MaxPool2D(channels: channels, height: height, width: width))
                height /= 2
                width /= 2
            }
            layers.append(Linear(inputs: channels * height * width, outputs: spec.classCount))
        }
        var layout = ParameterLayout()
        var offsets: [Int] = []
        for (index, layer) in layers.enumerated() {
            offsets.append(layout.count)
            for (name, shape) in layer.parameterShapes { layout.append("layers.\(index).\(name)", shape: shape) }
            for (name, shape) in layer.stateShapes {
                layout.append("layers.\(index).\(name)", shape: shape, role: .state)
            }
        }
        self.spec = spec
        self.layers = layers
        self.layerOffsets = offsets
        self.layout = layout
    }

    public var parameterCount: Int { layout.count }
    public var inputWidth: Int { spec.inputWidth }
    public var classCount: Int { spec.classCount }

    /// Seeded initialisation: He normal (std √(2/fan_in)) for weights feeding a ReLU (directly
    /// or through batch norm), Glorot uniform (±√(6/(fan_in+fan_out))) otherwise; biases zero;
    /// batch norm γ = 1, β = 0, running mean 0, running variance 1. He et al., ICCV 2015; Glorot
    /// and Bengio, AISTATS 2010; Ioffe and Szegedy, ICML 2015.
    public func initialParameters(seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed, stream: 0x1_1417)
        var parameters = [Float](repeating: 0, count: parameterCount)
        for (index, layer) in layers.enumerated() {
            let start = layerOffsets[index]
            if let norm = layer as? BatchNorm {
                for c in 0..<norm.channels {
                    parameters[start + c] = 1
                    parameters[start + 3 * norm.channels + c] = 1
                }
                continue
            }
            let fanIn: Int
            let fanOut: Int
            let weightCount: Int
            if let linear = layer as? Linear {
                (fanIn, fanOut, weightCount) =
                    (linear.inputWidth, linear.outputWidth, linear.inputWidth * linear.outputWidth)
            } else if let convolution = layer as? Convolution2D {
                let kernelArea = convolution.kernelSize * convolution.kernelSize
                (fanIn, fanOut) = (convolution.inputChannels * kernelArea, convolution.outputChannels * kernelArea)
                weightCount = convolution.outputChannels * fanIn
            } else {
                continue
            }
            var next = index + 1
            if next < layers.count, layers[next] is BatchNorm { next += 1 }
            let feedsReLU = next < layers.count && layers[next] is ReLU
            for i in start..<(start + weightCount) {
                if feedsReLU {
                    parameters[i] = Float(generator.nextStandardNormal() * (2 / Double(fanIn)).squareRoot())
                } else {
                    let limit = (6 / Double(fanIn + fanOut)).squareRoot()
                    parameters[i] = Float((2 * generator.nextUnitDouble() - 1) * limit)
                }
            }
        }
        return parameters
    }

    /// The ranges of the buffer holding state (running statistics), in order.
    public var stateRanges: [Range<Int>] { layout.slices.filter { $0.role == .state }.map(\.range) }
}
