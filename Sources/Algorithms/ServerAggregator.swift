import LearningCore

/// A federated server's round as a value: which clients train, what their local objective adds
/// about the global model they start from, and how their uploads become the next global model.
/// The coordinator runs it (it is the server); the worker asks it for its proximal term.
public protocol ServerAggregator: Sendable {
    /// The clients that train in round t (0-based), ascending.
    func sampledClients(round t: Int, workers: Int, seed: UInt64) -> [Int]
    /// The term a sampled client's local steps add to each gradient, μ·(x − anchor) for the
    /// global model `anchor` it started from; nil for none.
    func proximalTerm(anchor: [Float]) -> (mu: Float, anchor: [Float])?
    /// The next global model from the sampled clients' uploads (in rank order) and their numbers
    /// of training examples.
    func aggregate(_ uploads: [UnsafeBufferPointer<Float>], examples: [Int]) -> [Float]
}

/// Federated averaging (McMahan et al., AISTATS 2017): each round ⌈C·n⌉ clients (seeded, at
/// least one) run their local steps from the global model, and the server takes their models'
/// average weighted by data size, Σₖ (nₖ/Σⱼnⱼ)·xₖ (in Float64, rounded once).
public struct FederatedAveraging: ServerAggregator, Equatable {
    /// C, the fraction of clients sampled each round.
    public var clientFraction: Double

    public init(clientFraction: Double) {
        self.clientFraction = clientFraction
    }

    public func sampledClients(round t: Int, workers: Int, seed: UInt64) -> [Int] {
        let count = max(1, min(workers, Int((clientFraction * Double(workers)).rounded(.up))))
        var generator = SplitMix64(seed: seed, stream: 0xFED, substream: UInt64(t))
        var order = Array(0..<workers)
        generator.shuffle(&order)
        return Array(order.prefix(count)).sorted()
    }

    public func proximalTerm(anchor: [Float]) -> (mu: Float, anchor: [Float])? { nil }

    public func aggregate(_ uploads: [UnsafeBufferPointer<Float>], examples: [Int]) -> [Float] {
        precondition(uploads.count == examples.count && !uploads.isEmpty, "one example count per upload")
        let sizes = examples.map(Double.init)
        let total = sizes.reduce(0, +)
        return ModelAverage.weighted(uploads, weights: sizes.map { $0 / total })
    }
}

/// FedProx (Li et al., MLSys 2020): FedAvg's sampling and aggregation, with the proximal term
/// (μ/2)‖x − x_global‖² in every sampled client's local objective, which bounds how far
/// heterogeneous clients drift in their local steps.
public struct FederatedProximal: ServerAggregator, Equatable {
    public var averaging: FederatedAveraging
    /// μ of the proximal term.
    public var proximalMu: Double

    public init(clientFraction: Double, proximalMu: Double) {
        averaging = FederatedAveraging(clientFraction: clientFraction)
        self.proximalMu = proximalMu
    }

    public func sampledClients(round t: Int, workers: Int, seed: UInt64) -> [Int] {
        averaging.sampledClients(round: t, workers: workers, seed: seed)
    }

    public func proximalTerm(anchor: [Float]) -> (mu: Float, anchor: [Float])? { (Float(proximalMu), anchor) }

    public func aggregate(_ uploads: [UnsafeBufferPointer<Float>], examples: [Int]) -> [Float] {
        averaging.aggregate(uploads, examples: examples)
    }
}
