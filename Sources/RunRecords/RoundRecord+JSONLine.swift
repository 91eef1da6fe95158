extension RoundRecord {
    /// The record's line of `rounds.jsonl` (without the newline), written directly: the same
    /// bytes as `JSONEncoder` with sorted keys gives (keys in UTF-8 byte order, absent fields left
    /// out, a number as its shortest round-trip text with a trailing ".0" dropped), at a small
    /// fraction of its cost. The coordinator writes one line a round, so at hundreds of rounds a
    /// second the generic encoder was a few per cent of the whole machine. Nil when a number is
    /// not finite or a name needs escaping: `NonFiniteJSON.encode` then writes the line.
    public var jsonLine: [UInt8]? {
        var line: [UInt8] = []
        line.reserveCapacity(512)
        line.append(UInt8(ascii: "{"))
        var first = true
        for key in Self.sortedKeys {
            let mark = line.count
            if first { first = false } else { line.append(UInt8(ascii: ",")) }
            JSONLine.appendString(key.rawValue, to: &line)
            line.append(UInt8(ascii: ":"))
            let written: Bool?
            switch key {
            case .round: written = JSONLine.append(round, to: &line)
            case .trainLoss: written = JSONLine.append(trainLoss, to: &line)
            case .trainLossMin: written = JSONLine.append(trainLossMin, to: &line)
            case .trainLossMax: written = JSONLine.append(trainLossMax, to: &line)
            case .learningRate: written = JSONLine.append(learningRate, to: &line)
            case .consensusDistanceSquared: written = JSONLine.appendIfPresent(consensusDistanceSquared, to: &line)
            case .consensusDistanceSquaredByLayer:
                written = JSONLine.appendIfPresent(consensusDistanceSquaredByLayer, to: &line)
            case .averageModelNorm: written = JSONLine.appendIfPresent(averageModelNorm, to: &line)
            case .testLoss: written = JSONLine.appendIfPresent(testLoss, to: &line)
            case .testAccuracy: written = JSONLine.appendIfPresent(testAccuracy, to: &line)
            case .trainLossAverageModel: written = JSONLine.appendIfPresent(trainLossAverageModel, to: &line)
            case .trainAccuracyAverageModel: written = JSONLine.appendIfPresent(trainAccuracyAverageModel, to: &line)
            case .distanceFromInit: written = JSONLine.appendIfPresent(distanceFromInit, to: &line)
            case .distanceFromInitByLayer: written = JSONLine.appendIfPresent(distanceFromInitByLayer, to: &line)
            case .workerTestAccuracyMean: written = JSONLine.appendIfPresent(workerTestAccuracyMean, to: &line)
            case .workerTestAccuracyMin: written = JSONLine.appendIfPresent(workerTestAccuracyMin, to: &line)
            case .workerTestAccuracyMax: written = JSONLine.appendIfPresent(workerTestAccuracyMax, to: &line)
            case .bytesSent: written = JSONLine.append(bytesSent, to: &line)
            case .epoch: written = JSONLine.append(epoch, to: &line)
            case .elapsedSeconds: written = JSONLine.appendIfPresent(elapsedSeconds, to: &line)
            case .topologyPhase: written = topologyPhase.map { JSONLine.append($0, to: &line) }
            case .bytesSentByWorker: written = JSONLine.appendIfPresent(bytesSentByWorker, to: &line)
            case .workersAlive: written = workersAlive.map { JSONLine.append($0, to: &line) }
            case .clientAccuracy: written = JSONLine.appendIfPresent(clientAccuracy, to: &line)
            case .clientAccuracyMean: written = JSONLine.appendIfPresent(clientAccuracyMean, to: &line)
            case .clientAccuracyWeightedMean: written = JSONLine.appendIfPresent(clientAccuracyWeightedMean, to: &line)
            case .clientAccuracyStandardDeviation:
                written = JSONLine.appendIfPresent(clientAccuracyStandardDeviation, to: &line)
            case .clientAccuracyWorst: written = JSONLine.appendIfPresent(clientAccuracyWorst, to: &line)
            case .clientAccuracyWorstTenth: written = JSONLine.appendIfPresent(clientAccuracyWorstTenth, to: &line)
            case .clientValidationAccuracy: written = JSONLine.appendIfPresent(clientValidationAccuracy, to: &line)
            case .clientValidationAccuracyMean:
                written = JSONLine.appendIfPresent(clientValidationAccuracyMean, to: &line)
            case .clientValidationAccuracyWorst:
                written = JSONLine.appendIfPresent(clientValidationAccuracyWorst, to: &line)
            case .additiveLambda: written = JSONLine.appendIfPresent(additiveLambda, to: &line)
            case .additiveMu: written = JSONLine.appendIfPresent(additiveMu, to: &line)
            case .additiveGlobalZeroFraction: written = JSONLine.appendIfPresent(additiveGlobalZeroFraction, to: &line)
            }
            switch written {
            case nil:  // absent: the key is taken back
                line.removeSubrange(mark...)
                if mark == 1 { first = true }
            case false?: return nil
            case true?: break
            }
        }
        line.append(UInt8(ascii: "}"))
        return line
    }

    /// Keys in the order `JSONEncoder`'s `.sortedKeys` writes them: by their UTF-8 bytes.
    static let sortedKeys = CodingKeys.allCases.sorted { $0.rawValue.utf8.lexicographicallyPrecedes($1.rawValue.utf8) }
}

/// The pieces of `RoundRecord.jsonLine`. Each `append` returns false when the value cannot be
/// written as `JSONEncoder` would without its non-finite handling or string escaping, and the
/// optional forms return nil for an absent value (nothing written).
enum JSONLine {
    static func append(_ value: Int, to line: inout [UInt8]) -> Bool {
        line.append(contentsOf: String(value).utf8)
        return true
    }

    static func append(_ value: Double, to line: inout [UInt8]) -> Bool {
        guard value.isFinite else { return false }
        let text = value.description
        line.append(contentsOf: text.hasSuffix(".0") ? text.utf8.dropLast(2) : text.utf8[...])
        return true
    }

    static func appendIfPresent(_ value: Double?, to line: inout [UInt8]) -> Bool? {
        value.map { append($0, to: &line) }
    }

    static func appendIfPresent(_ values: [Double]?, to line: inout [UInt8]) -> Bool? {
        appendList(values, to: &line) { append($0, to: &$1) }
    }

    static func appendIfPresent(_ values: [Int]?, to line: inout [UInt8]) -> Bool? {
        appendList(values, to: &line) { append($0, to: &$1) }
    }

    /// `[a,b,…]` with each element written by `element` (false when it cannot be).
    private static func appendList<Element>(
        _ values: [Element]?, to line: inout [UInt8], element: (Element, inout [UInt8]) -> Bool
    ) -> Bool? {
        guard let values else { return nil }
        line.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { line.append(UInt8(ascii: ",")) }
            guard element(value, &line) else { return false }
        }
        line.append(UInt8(ascii: "]"))
        return true
    }

    static func appendIfPresent(_ map: [String: Double]?, to line: inout [UInt8]) -> Bool? {
        guard let map else { return nil }
        line.append(UInt8(ascii: "{"))
        for (index, key) in map.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).enumerated() {
            guard isPlain(key) else { return false }
            if index > 0 { line.append(UInt8(ascii: ",")) }
            appendString(key, to: &line)
            line.append(UInt8(ascii: ":"))
            guard append(map[key]!, to: &line) else { return false }
        }
        line.append(UInt8(ascii: "}"))
        return true
    }

    /// A string the encoder writes as it is, between quotes: printable ASCII other than the
    /// characters it escapes (quote, backslash and slash).
    static func isPlain(_ text: String) -> Bool {
        text.utf8.allSatisfy {
            $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") && $0 != UInt8(ascii: "/")
        }
    }

    /// A plain string (the record's own keys, or a name `isPlain` accepted), quoted.
    static func appendString(_ text: String, to line: inout [UInt8]) {
        line.append(UInt8(ascii: "\""))
        line.append(contentsOf: text.utf8)
        line.append(UInt8(ascii: "\""))
    }
}
