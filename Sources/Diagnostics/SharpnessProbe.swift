import LearningCore

/// What the coordinator measures every `every` rounds, and with how much work (each Hessian-vector
/// product costs about two gradient evaluations on the evaluation set).
public struct SharpnessSettings: Sendable, Equatable, Codable {
    /// Measure every this many rounds (and after the last); 0 turns sharpness off.
    public var every: Int = 500
    /// Size of the fixed, seeded subset of the training data the curvature is measured on.
    public var examples: Int = 256
    /// The most Lanczos products for the top eigenvalues; the iteration stops earlier once they
    /// and the most negative one converge to `eigenTolerance` (relative to the spectral radius).
    public var lanczosIterations: Int = 50
    public var eigenTolerance: Double = 1e-3
    public var topEigenvalueCount: Int = 3
    public var hutchinsonProbes: Int = 4
    public var slqProbes: Int = 1
    public var slqIterations: Int = 10
    public var densityBins: Int = 40
    /// Per-layer (per named slice) top eigenvalue and trace.
    public var perLayer: Bool = true
    public var perLayerIterations: Int = 20
    public var perLayerProbes: Int = 2
    /// SAM ρ (also used by ASAM and m-sharpness).
    public var samRadius: Double = 0.05
    public var samAscentSteps: Int = 5
    public var mSharpnessBatch: Int = 64
    /// σ of the Gaussian average sharpness.
    public var gaussianSigma: Double = 0.01
    public var perturbationSamples: Int = 8
    /// Workers whose own models are measured too (x̄ always is).
    public var workers: [Int] = []
    /// With batch norm: measure the training loss (batch statistics over groups of the training
    /// batch or ghost size, what SGD descends) or the inference loss (running statistics).
    public var batchNormLoss: BatchNormLoss = .training

    public init() {}

    enum CodingKeys: String, CodingKey {
        case every, examples, perLayer, workers
        case lanczosIterations = "lanczos_iterations"
        case eigenTolerance = "eigen_tolerance"
        case topEigenvalueCount = "top_eigenvalue_count"
        case hutchinsonProbes = "hutchinson_probes"
        case slqProbes = "slq_probes"
        case slqIterations = "slq_iterations"
        case densityBins = "density_bins"
        case perLayerIterations = "per_layer_iterations"
        case perLayerProbes = "per_layer_probes"
        case samRadius = "sam_radius"
        case samAscentSteps = "sam_ascent_steps"
        case mSharpnessBatch = "m_sharpness_batch"
        case gaussianSigma = "gaussian_sigma"
        case perturbationSamples = "perturbation_samples"
        case batchNormLoss = "batch_norm_loss"
    }

    /// Every field has a default, so settings written before a field existed still decode.
    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        every = try c.decodeIfPresent(Int.self, forKey: .every) ?? every
        examples = try c.decodeIfPresent(Int.self, forKey: .examples) ?? examples
        lanczosIterations = try c.decodeIfPresent(Int.self, forKey: .lanczosIterations) ?? lanczosIterations
        // Configurations written before the convergence test ran a fixed number of steps.
        eigenTolerance = try c.decodeIfPresent(Double.self, forKey: .eigenTolerance) ?? 0
        topEigenvalueCount = try c.decodeIfPresent(Int.self, forKey: .topEigenvalueCount) ?? topEigenvalueCount
        hutchinsonProbes = try c.decodeIfPresent(Int.self, forKey: .hutchinsonProbes) ?? hutchinsonProbes
        slqProbes = try c.decodeIfPresent(Int.self, forKey: .slqProbes) ?? slqProbes
        slqIterations = try c.decodeIfPresent(Int.self, forKey: .slqIterations) ?? slqIterations
        densityBins = try c.decodeIfPresent(Int.self, forKey: .densityBins) ?? densityBins
        perLayer = try c.decodeIfPresent(Bool.self, forKey: .perLayer) ?? perLayer
        perLayerIterations = try c.decodeIfPresent(Int.self, forKey: .perLayerIterations) ?? perLayerIterations
        perLayerProbes = try c.decodeIfPresent(Int.self, forKey: .perLayerProbes) ?? perLayerProbes
        samRadius = try c.decodeIfPresent(Double.self, forKey: .samRadius) ?? samRadius
        samAscentSteps = try c.decodeIfPresent(Int.self, forKey: .samAscentSteps) ?? samAscentSteps
        mSharpnessBatch = try c.decodeIfPresent(Int.self, forKey: .mSharpnessBatch) ?? mSharpnessBatch
        gaussianSigma = try c.decodeIfPresent(Double.self, forKey: .gaussianSigma) ?? gaussianSigma
        perturbationSamples = try c.decodeIfPresent(Int.self, forKey: .perturbationSamples) ?? perturbationSamples
        workers = try c.decodeIfPresent([Int].self, forKey: .workers) ?? workers
        batchNormLoss = try c.decodeIfPresent(BatchNormLoss.self, forKey: .batchNormLoss) ?? batchNormLoss
    }
}

/// One line of `sharpness.jsonl`: curvature and sharpness of one model at one round.
/// Which loss curvature is measured on when the model has batch norm.
public enum BatchNormLoss: String, Sendable, Codable, CaseIterable {
    case training
    case inference
}

public struct SharpnessRecord: Sendable, Equatable, Codable {
    public struct Layer: Sendable, Equatable, Codable {
        public var name: String
        public var lambdaMax: Double
        public var trace: Double
        public var traceStandardError: Double
        /// λ_max's Lanczos residual bound and whether it met the tolerance (nil in older records).
        public var lambdaMaxResidualBound: Double? = nil
        public var lambdaMaxConverged: Bool? = nil
        /// The trace's 95 % interval (±t·s.e., Student's t on probes − 1 degrees of freedom).
        public var traceInterval95: [Double]? = nil
        enum CodingKeys: String, CodingKey {
            case name
            case traceInterval95 = "trace_interval_95"
            case lambdaMax = "lambda_max"
            case lambdaMaxResidualBound = "lambda_max_residual_bound"
            case lambdaMaxConverged = "lambda_max_converged"
            case trace
            case traceStandardError = "trace_standard_error"
        }
    }

    public var round: Int
    /// `average` for x̄, `worker N` for a worker's own model.
    public var model: String
    public var learningRate: Double
    /// 2/η: gradient descent is unstable along directions with λ > 2/η (edge of stability).
    public var twoOverLearningRate: Double
    /// The edge-of-stability threshold of the optimizer in use (2/η for SGD, 2(1+β)/η with heavy
    /// ball, …; see `OptimizerSettings.stabilityThreshold`) and its formula; nil in records
    /// written before it existed.
    public var stabilityThreshold: Double?
    public var stabilityThresholdFormula: String?
    public var loss: Double
    public var lambdaMax: Double
    public var topEigenvalues: [Double]
    public var mostNegativeEigenvalue: Double
    /// Lanczos residual bounds of `topEigenvalues` and of the most negative eigenvalue (an exact
    /// eigenvalue lies within each), whether all met the tolerance, and the products taken.
    public var topEigenvalueResidualBounds: [Double]?
    public var mostNegativeEigenvalueResidualBound: Double?
    public var eigenvaluesConverged: Bool?
    public var lanczosIterationsUsed: Int?
    public var trace: Double
    public var traceStandardError: Double
    /// The Hutchinson trace's 95 % interval [low, high] (±t·s.e., Student's t on probes − 1
    /// degrees of freedom: with few probes ±2 s.e. covers far less than 95 %).
    public var traceInterval95: [Double]?
    /// Hutch++ with the same products: no error estimate of its own (its reported s.e. would only
    /// be its Hutchinson part's), so the Hutchinson figure is the one with an interval.
    public var traceHutchPlusPlus: Double
    public var densityEdges: [Double]
    public var densityMasses: [Double]
    public var layers: [Layer]
    public var samSharpness: Double
    public var samSharpnessAscent: Double
    public var adaptiveSharpness: Double
    public var mSharpness: Double
    public var gaussianSharpness: Double
    public var gaussianSharpnessStandardError: Double
    /// Only for x̄ with more than one worker.
    public var averageDirectionSharpness: Double?
    public var averageDirectionSharpnessStandardError: Double?
    public var hessianVectorProducts: Int
    public var seconds: Double?
    /// With batch norm, which statistics the measured loss used, e.g. `batch (groups of 32)` or `running`.
    public var batchNormStatistics: String?

    enum CodingKeys: String, CodingKey {
        case round, model, loss, trace, layers, seconds
        case learningRate = "learning_rate"
        case twoOverLearningRate = "two_over_learning_rate"
        case stabilityThreshold = "stability_threshold"
        case stabilityThresholdFormula = "stability_threshold_formula"
        case lambdaMax = "lambda_max"
        case topEigenvalues = "top_eigenvalues"
        case mostNegativeEigenvalue = "most_negative_eigenvalue"
        case topEigenvalueResidualBounds = "top_eigenvalue_residual_bounds"
        case mostNegativeEigenvalueResidualBound = "most_negative_eigenvalue_residual_bound"
        case eigenvaluesConverged = "eigenvalues_converged"
        case lanczosIterationsUsed = "lanczos_iterations_used"
        case traceStandardError = "trace_standard_error"
        case traceInterval95 = "trace_interval_95"
        case traceHutchPlusPlus = "trace_hutch_plus_plus"
        case densityEdges = "density_edges"
        case densityMasses = "density_masses"
        case samSharpness = "sam_sharpness"
        case samSharpnessAscent = "sam_sharpness_ascent"
        case adaptiveSharpness = "adaptive_sharpness"
        case mSharpness = "m_sharpness"
        case gaussianSharpness = "gaussian_sharpness"
        case gaussianSharpnessStandardError = "gaussian_sharpness_standard_error"
        case averageDirectionSharpness = "average_direction_sharpness"
        case batchNormStatistics = "batch_norm_statistics"
        case averageDirectionSharpnessStandardError = "average_direction_sharpness_standard_error"
        case hessianVectorProducts = "hessian_vector_products"
    }
}

public enum SharpnessProbe {
    /// Measures one model. `workers` (all the workers' models) enables average-direction
    /// sharpness, which is defined at x̄. The two halves one after the other; a caller with a core
    /// to spare runs them at once, each on a surface of its own (`SharpnessRunner`): the record
    /// is the same.
    public static func measure(
        _ surface: NetworkLoss, at x: [Float], model: String, round: Int, learningRate: Double,
        settings: SharpnessSettings,
        workers: [[Float]]? = nil, seed: UInt64, stabilityThreshold: (value: Double, formula: String)? = nil
    ) -> SharpnessRecord {
        record(
            curvature: measureCurvature(surface, at: x, settings: settings, seed: seed),
            layersAndSharpness: measureLayersAndSharpness(
                surface, at: x, settings: settings, workers: workers, seed: seed),
            model: model, round: round, learningRate: learningRate, stabilityThreshold: stabilityThreshold)
    }

    /// The whole-model curvature: top eigenvalues and trace (Hutchinson and Hutch++).
    public struct CurvaturePart: Sendable {
        var top: Curvature.Eigenvalues
        var trace: Curvature.TraceEstimate
        var hutchPlusPlus: Double
        var products: Int
    }

    /// Per-layer curvature, the spectral density, the loss and the sharpness measures (SAM, ASAM,
    /// m-, Gaussian and average-direction sharpness). The density is in this half so the two take
    /// about as long (the last measurement, on two free cores, ends with the slower one).
    public struct LayersAndSharpnessPart: Sendable {
        var layers: [SharpnessRecord.Layer]
        var histogram: (edges: [Double], masses: [Double])
        var loss: Double
        var sam: Double
        var samAscent: Double
        var adaptive: Double
        var m: Double
        var gaussian: Sharpness.Estimate
        var averageDirection: Sharpness.Estimate?
        var products: Int
    }

    public static func measureCurvature(
        _ surface: NetworkLoss, at x: [Float], settings: SharpnessSettings, seed: UInt64
    ) -> CurvaturePart {
        let counting = CountingSurface(surface)
        let operators = counting.curvatureOperators(at: x)
        let (apply, dimension) = Curvature.restrict(operators.product, dimension: counting.dimension)
        let top = Curvature.topEigenvalues(
            apply, dimension: dimension, count: settings.topEigenvalueCount, iterations: settings.lanczosIterations,
            tolerance: settings.eigenTolerance, seed: seed)
        let trace = Curvature.hutchinson(
            quadraticForm: Curvature.restrict(quadraticForm: operators.quadraticForm, dimension: dimension).0,
            dimension: dimension, probes: settings.hutchinsonProbes, seed: seed)
        let plus = Curvature.hutchPlusPlus(apply, dimension: dimension, products: settings.hutchinsonProbes, seed: seed)
        return CurvaturePart(top: top, trace: trace, hutchPlusPlus: plus.value, products: counting.products)
    }

    public static func measureLayersAndSharpness(
        _ surface: NetworkLoss, at x: [Float], settings: SharpnessSettings, workers: [[Float]]?, seed: UInt64
    ) -> LayersAndSharpnessPart {
        let counting = CountingSurface(surface)
        var layers: [SharpnessRecord.Layer] = []
        let operators = counting.curvatureOperators(at: x)
        let dimension = counting.dimension
        if settings.perLayer {
            // Weight matrices only: the bias blocks are tiny in curvature as in size. A block's
            // products leave out the layers below it (the last layer's cost a sliver of a full one).
            for slice in surface.network.layout.slices where slice.shape.count > 1 {
                let blockOperators = operators.restricted(slice.range)
                let (block, size) = Curvature.restrict(blockOperators.product, dimension: dimension, to: slice.range)
                let layerTop = Curvature.topEigenvalues(
                    block, dimension: size, count: 1, iterations: min(settings.perLayerIterations, size),
                    tolerance: settings.eigenTolerance, seed: seed)
                let layerTrace = Curvature.hutchinson(
                    quadraticForm: Curvature.restrict(
                        quadraticForm: blockOperators.quadraticForm, dimension: dimension, to: slice.range
                    ).0,
                    dimension: size, probes: settings.perLayerProbes, seed: seed)
                layers.append(
                    .init(
                        name: slice.name, lambdaMax: layerTop.largest.first ?? 0, trace: layerTrace.value,
                        traceStandardError: layerTrace.standardError,
                        lambdaMaxResidualBound: layerTop.largestResidualBounds.first,
                        lambdaMaxConverged: layerTop.converged,
                        traceInterval95: [layerTrace.interval95.low, layerTrace.interval95.high]))
            }
        }
        let density = Curvature.spectralDensity(
            Curvature.restrict(operators.product, dimension: dimension).0, dimension: dimension,
            probes: settings.slqProbes, iterations: settings.slqIterations, seed: seed)
        let histogram = density.histogram(bins: settings.densityBins)
        let loss = surface.loss(at: x)
        let sam = Sharpness.worstCase(surface, at: x, radius: settings.samRadius)
        let samAscent = Sharpness.worstCase(
            surface, at: x, radius: settings.samRadius, ascentSteps: settings.samAscentSteps)
        let adaptive = Sharpness.adaptive(surface, at: x, radius: settings.samRadius)
        let m = Sharpness.mSharpness(surface, at: x, radius: settings.samRadius, batchSize: settings.mSharpnessBatch)
        let gaussian = Sharpness.gaussian(
            surface, at: x, sigma: settings.gaussianSigma, samples: settings.perturbationSamples, seed: seed)
        var averageDirection: Sharpness.Estimate?
        if let workers, workers.count > 1 {
            averageDirection = Sharpness.averageDirection(
                surface, average: x, workers: workers, samples: settings.perturbationSamples, seed: seed)
        }
        return LayersAndSharpnessPart(
            layers: layers, histogram: (histogram.edges, histogram.masses), loss: loss, sam: sam, samAscent: samAscent,
            adaptive: adaptive, m: m.value,
            gaussian: gaussian, averageDirection: averageDirection, products: counting.products)
    }

    /// The record of one model's two halves.
    public static func record(
        curvature: CurvaturePart, layersAndSharpness part: LayersAndSharpnessPart, model: String, round: Int,
        learningRate: Double, stabilityThreshold: (value: Double, formula: String)? = nil
    ) -> SharpnessRecord {
        let top = curvature.top
        let trace = curvature.trace
        return SharpnessRecord(
            round: round, model: model, learningRate: learningRate, twoOverLearningRate: 2 / learningRate,
            stabilityThreshold: stabilityThreshold?.value ?? 2 / learningRate,
            stabilityThresholdFormula: stabilityThreshold?.formula ?? "2/η", loss: part.loss,
            lambdaMax: top.largest.first ?? 0, topEigenvalues: top.largest, mostNegativeEigenvalue: top.mostNegative,
            topEigenvalueResidualBounds: top.largestResidualBounds,
            mostNegativeEigenvalueResidualBound: top.mostNegativeResidualBound, eigenvaluesConverged: top.converged,
            lanczosIterationsUsed: top.iterations,
            trace: trace.value, traceStandardError: trace.standardError,
            traceInterval95: [trace.interval95.low, trace.interval95.high],
            traceHutchPlusPlus: curvature.hutchPlusPlus,
            densityEdges: part.histogram.edges, densityMasses: part.histogram.masses, layers: part.layers,
            samSharpness: part.sam, samSharpnessAscent: part.samAscent, adaptiveSharpness: part.adaptive,
            mSharpness: part.m, gaussianSharpness: part.gaussian.value,
            gaussianSharpnessStandardError: part.gaussian.standardError,
            averageDirectionSharpness: part.averageDirection?.value,
            averageDirectionSharpnessStandardError: part.averageDirection?.standardError,
            hessianVectorProducts: curvature.products + part.products, seconds: nil)
    }
}

/// Counts Hessian-vector products (for the report's cost column).
final class CountingSurface: LossSurface {
    let base: LossSurface
    private(set) var products = 0
    init(_ base: LossSurface) { self.base = base }
    var dimension: Int { base.dimension }
    func loss(at x: [Float]) -> Double { base.loss(at: x) }
    func lossAndGradient(at x: [Float]) -> (loss: Double, gradient: [Float]) { base.lossAndGradient(at: x) }
    func hessianVectorProduct(at x: [Float], _ v: [Float]) -> [Float] {
        products += 1
        return base.hessianVectorProduct(at: x, v)
    }
    /// A quadratic form counts as a product (it costs a little more than half of one).
    func curvatureOperators(at x: [Float]) -> CurvatureOperators { counted(base.curvatureOperators(at: x)) }

    private func counted(_ operators: CurvatureOperators) -> CurvatureOperators {
        CurvatureOperators(
            product: { v in
                self.products += 1
                return operators.product(v)
            },
            quadraticForm: { v in
                self.products += 1
                return operators.quadraticForm(v)
            },
            restricted: { block in self.counted(operators.restricted(block)) })
    }
}
