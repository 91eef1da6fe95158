import Foundation

/// JSON for records that may hold NaN or ±Infinity (a diverged loss, 2/η with η = 0), which JSON
/// cannot represent. Such a number is written as `null`, and the record (a JSON object) gains a
/// field `non_finite` mapping the path of each one to what it was: `"nan"`, `"inf"` or `"-inf"`;
/// the path is the key, or `key/subkey` and `key/index` inside maps and arrays. Any JSON reader
/// sees a null where there is no number; `decode` restores the values exactly. Files written by
/// earlier versions (the strings "nan", "inf", "-inf" in place of numbers) still decode.
public enum NonFiniteJSON {
    /// The field that names the non-finite values of a record.
    public static let fieldName = "non_finite"
    private static let marker = "@dsgd-non-finite@"
    private static let markers = (inf: marker + "inf", negativeInf: marker + "-inf", nan: marker + "nan")

    /// Encodes `value`; the paths of its non-finite numbers, if any, are returned as well.
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = false) throws -> (
        data: Data, nonFinite: [String: String]
    ) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: markers.inf, negativeInfinity: markers.negativeInf, nan: markers.nan)
        let data = try encoder.encode(value)
        // Fast path: nothing to replace.
        guard data.range(of: Data(marker.utf8)) != nil else { return (data, [:]) }
        var nonFinite: [String: String] = [:]
        let object = replaceMarkers(try JSONSerialization.jsonObject(with: data), path: nil, into: &nonFinite)
        guard var record = object as? [String: Any] else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: [], debugDescription: "non-finite numbers outside a JSON object"))
        }
        record[fieldName] = nonFinite
        var options: JSONSerialization.WritingOptions = [.sortedKeys]
        if pretty { options.insert(.prettyPrinted) }
        return (try JSONSerialization.data(withJSONObject: record, options: options), nonFinite)
    }

    /// Decodes a record written by `encode` (or by earlier versions).
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: markers.inf, negativeInfinity: markers.negativeInf, nan: markers.nan)
        guard data.range(of: Data("\"\(fieldName)\"".utf8)) != nil,
            var record = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let nonFinite = record.removeValue(forKey: fieldName) as? [String: String]
        else {
            do {
                return try decoder.decode(type, from: data)
            } catch {
                // Earlier versions wrote the strings "nan", "inf" and "-inf".
                let legacy = JSONDecoder()
                legacy.nonConformingFloatDecodingStrategy = .convertFromString(
                    positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
                if let value = try? legacy.decode(type, from: data) { return value }
                throw error
            }
        }
        for (path, kind) in nonFinite {
            let value: String
            switch kind {
            case "nan": value = markers.nan
            case "inf": value = markers.inf
            case "-inf": value = markers.negativeInf
            default:
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: [], debugDescription: "\(fieldName): '\(kind)' at '\(path)' is not nan, inf or -inf"
                    ))
            }
            guard
                let updated = set(
                    value, at: path.split(separator: "/", omittingEmptySubsequences: false)[...], in: record)
                    as? [String: Any]
            else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: [], debugDescription: "\(fieldName): no null at '\(path)'"))
            }
            record = updated
        }
        return try decoder.decode(type, from: try JSONSerialization.data(withJSONObject: record))
    }

    private static func replaceMarkers(_ node: Any, path: String?, into nonFinite: inout [String: String]) -> Any {
        func child(_ key: String) -> String { path.map { "\($0)/\(key)" } ?? key }
        switch node {
        case let text as String where text.hasPrefix(marker):
            nonFinite[path ?? ""] = String(text.dropFirst(marker.count))
            return NSNull()
        case let object as [String: Any]:
            var result: [String: Any] = [:]
            for (key, value) in object { result[key] = replaceMarkers(value, path: child(key), into: &nonFinite) }
            return result
        case let array as [Any]:
            return array.enumerated().map { replaceMarkers($1, path: child(String($0)), into: &nonFinite) }
        default:
            return node
        }
    }

    /// `node` with `value` in place of the null at `path` (nil when there is no null there).
    private static func set(_ value: String, at path: ArraySlice<Substring>, in node: Any) -> Any? {
        guard let key = path.first else { return node is NSNull ? value : nil }
        let rest = path.dropFirst()
        if var object = node as? [String: Any], let inner = object[String(key)] {
            guard let updated = set(value, at: rest, in: inner) else { return nil }
            object[String(key)] = updated
            return object
        }
        if var array = node as? [Any], let index = Int(key), array.indices.contains(index) {
            guard let updated = set(value, at: rest, in: array[index]) else { return nil }
            array[index] = updated
            return array
        }
        return nil
    }
}
