import Yams

/// A grid of runs, read from a small YAML file:
///
/// ```yaml
/// runner: simulate          # or cluster (launch/local.sh: one process per worker)
/// retries: 1                # further attempts of a failed cell (default 1)
/// flags:                    # run flags every cell gets (`true` is a switch, `false` leaves it out)
///   workers: 16
///   rounds: 1500
///   no-eval-workers: true
/// axes:                     # the grid: every combination, the first axis outermost
///   topology: [complete, ring]
///   batch:                  # a value may set several flags at once (its label names the cell)
///     - {label: b1024, batch: 64, lr: 0.1}
///     - {label: b8192, batch: 512, lr: 0.8}
///   seed: [0, 1, 2]
/// ```
///
/// Errors name the file's line and column.
public struct SweepSpec: Sendable, Equatable {
    public enum Runner: String, Sendable, CaseIterable { case simulate, cluster }

    /// One run flag: `--name value`, or `--name` alone when `value` is nil (a switch).
    public struct Flag: Sendable, Equatable, Hashable {
        public var name: String
        public var value: String?
        public init(_ name: String, _ value: String?) {
            self.name = name
            self.value = value
        }
        /// `--name value`; `--name=value` when the value starts with '-' (a negative number), which
        /// would otherwise read as a flag.
        public var arguments: [String] {
            guard let value else { return ["--\(name)"] }
            return value.hasPrefix("-") ? ["--\(name)=\(value)"] : ["--\(name)", value]
        }
    }

    /// One value of an axis: its label (part of the cell's name) and the flags it sets.
    public struct AxisValue: Sendable, Equatable {
        public var label: String
        public var flags: [Flag]
    }

    public struct Axis: Sendable, Equatable {
        public var name: String
        public var values: [AxisValue]
    }

    public var runner: Runner = .simulate
    public var retries = 1
    public var flags: [Flag] = []
    public var axes: [Axis] = []

    /// Flags the sweep sets itself for every cell.
    public static let reservedFlags: Set<String> = [
        "run-dir", "overwrite", "bind", "endpoint-file", "run-id-file", "abort-reason-file", "coordinator", "rank",
    ]

    public init(runner: Runner = .simulate, retries: Int = 1, flags: [Flag] = [], axes: [Axis] = []) {
        self.runner = runner
        self.retries = retries
        self.flags = flags
        self.axes = axes
    }

    /// Parses a spec; `file` names it in errors.
    public init(yaml text: String, file: String) throws {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw SweepSpecError(file: file, line: nil, message: "not valid YAML: \(error)")
        }
        guard let root, case .mapping(let mapping) = root else {
            throw SweepSpecError(file: file, line: root?.mark?.line, message: "the spec must be a mapping with 'axes'")
        }
        func fail(_ node: Node, _ message: String) -> SweepSpecError {
            SweepSpecError(file: file, line: node.mark?.line, column: node.mark?.column, message: message)
        }
        func scalar(_ node: Node, _ what: String) throws -> String {
            guard case .scalar(let value) = node else { throw fail(node, "\(what) must be a single value") }
            return value.string
        }
        /// A flag from `name: value` (value a scalar; true: a switch; false: left out).
        func flag(_ key: Node, _ value: Node) throws -> Flag? {
            let name = try scalar(key, "a flag name")
            guard name.range(of: "^[a-z0-9][a-z0-9-]*$", options: .regularExpression) != nil else {
                throw fail(
                    key, "'\(name)' is not a flag name (lower-case words joined by '-', without the leading '--')")
            }
            if Self.reservedFlags.contains(name) {
                throw fail(key, "--\(name) is set by the sweep for every cell; leave it out")
            }
            guard case .scalar(let scalarValue) = value else {
                throw fail(value, "--\(name) needs a single value, not a list or mapping")
            }
            // YAML 1.2's core schema: plain true/false are booleans, plain null/~/nothing is null.
            if scalarValue.style == .plain {
                switch scalarValue.string {
                case "true", "True", "TRUE": return Flag(name, nil)
                case "false", "False", "FALSE": return nil
                case "", "~", "null", "Null", "NULL": throw fail(value, "--\(name) has no value")
                default: break
                }
            }
            return Flag(name, scalarValue.string)
        }
        var sawAxes = false
        var seenKeys = Set<String>()
        for (key, value) in mapping {
            let name = try scalar(key, "a key")
            guard seenKeys.insert(name).inserted else { throw fail(key, "'\(name)' is given twice") }
            switch name {
            case "runner":
                let text = try scalar(value, "runner")
                guard let runner = Runner(rawValue: text) else {
                    throw fail(value, "runner '\(text)': use simulate or cluster")
                }
                self.runner = runner
            case "retries":
                guard let retries = value.int, retries >= 0, retries <= 10 else {
                    throw fail(value, "retries must be a whole number from 0 to 10")
                }
                self.retries = retries
            case "flags":
                guard case .mapping(let flagMapping) = value else { throw fail(value, "flags must be a mapping") }
                var names = Set<String>()
                for (flagKey, flagValue) in flagMapping {
                    guard let made = try flag(flagKey, flagValue) else { continue }
                    guard names.insert(made.name).inserted else { throw fail(flagKey, "--\(made.name) is given twice") }
                    flags.append(made)
                }
            case "axes":
                sawAxes = true
                guard case .mapping(let axisMapping) = value, !axisMapping.isEmpty else {
                    throw fail(value, "axes must be a mapping of at least one axis to its values")
                }
                for (axisKey, axisValues) in axisMapping {
                    let axisName = try scalar(axisKey, "an axis name")
                    guard case .sequence(let sequence) = axisValues, !sequence.isEmpty else {
                        throw fail(axisValues, "axis '\(axisName)' needs a list of at least one value")
                    }
                    var values: [AxisValue] = []
                    for element in sequence {
                        switch element {
                        case .scalar:
                            guard let made = try flag(axisKey, element) else {
                                values.append(AxisValue(label: "no-\(axisName)", flags: []))
                                continue
                            }
                            values.append(AxisValue(label: made.value ?? axisName, flags: [made]))
                        case .mapping(let valueMapping):
                            var label: String?
                            var setFlags: [Flag] = []
                            for (valueKey, valueValue) in valueMapping {
                                if valueKey.string == "label" {
                                    label = try scalar(valueValue, "a label")
                                    continue
                                }
                                if let made = try flag(valueKey, valueValue) { setFlags.append(made) }
                            }
                            let joined = setFlags.map { "\($0.name)=\($0.value ?? "on")" }.joined(separator: ",")
                            values.append(AxisValue(label: label ?? joined, flags: setFlags))
                        default:
                            throw fail(element, "a value of axis '\(axisName)' must be a value or a mapping of flags")
                        }
                    }
                    var labels = Set<String>()
                    for (value, element) in zip(values, sequence) where !labels.insert(value.label).inserted {
                        throw fail(element, "axis '\(axisName)' has the value '\(value.label)' twice")
                    }
                    axes.append(Axis(name: axisName, values: values))
                }
            default:
                throw fail(key, "unknown key '\(name)' (the keys are runner, retries, flags, axes)")
            }
        }
        guard sawAxes else {
            throw SweepSpecError(file: file, line: nil, message: "no 'axes': a sweep needs at least one axis")
        }
        // An axis may not set a flag that `flags` or another axis sets: a cell's value would depend
        // on the order of the arguments.
        var owner: [String: String] = [:]
        for flag in flags { owner[flag.name] = "flags" }
        for axis in axes {
            let names = Set(axis.values.flatMap { $0.flags.map(\.name) })
            for name in names.sorted() {
                if let other = owner[name] {
                    throw SweepSpecError(
                        file: file, line: nil, message: "--\(name) is set both by axis '\(axis.name)' and by \(other)")
                }
                owner[name] = "axis '\(axis.name)'"
            }
        }
    }
}

/// A sweep spec that cannot be used, naming the file and where in it.
public struct SweepSpecError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int?
    public var column: Int? = nil
    public var message: String
    public var description: String {
        let place = line.map { ":\($0)" + (column.map { ":\($0)" } ?? "") } ?? ""
        return "\(file)\(place): \(message)"
    }
}
