import Foundation
import XCTest
import _TestSupport

/// `dsgd simulate ARGUMENTS` with the run folder `scratch/run` (replaced if there): exit status and output.
func simulate(_ arguments: [String], in scratch: URL) throws -> (Int32, String) {
    let child = try Child(
        try dsgdBinary(),
        ["simulate", "--overwrite", "--run-dir", scratch.appendingPathComponent("run").path] + arguments,
        output: scratch.appendingPathComponent("out-\(UUID().uuidString.prefix(6)).log"))
    return (child.wait(seconds: 60), child.text)
}

/// Bad inputs give a clear error naming the file, line or flag, and a non-zero exit.
final class CommandLineErrorTests: XCTestCase {
    func testBadDataFiles_NameTheFile() throws {
        let scratch = try temporaryDirectory("baddata")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try writeTinyIDX(to: scratch, trainCount: 100, testCount: 20)
        let small = ["--workers", "2", "--rounds", "2", "--model", "64-10", "--data", scratch.path]
        XCTAssertEqual(try simulate(small, in: scratch).0, 0)

        let testImages = scratch.appendingPathComponent("t10k-images-idx3-ubyte")
        let original = try Data(contentsOf: testImages)
        try original.dropLast(7).write(to: testImages)
        var (status, text) = try simulate(small, in: scratch)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains("\(testImages.path): truncated"), text)

        var wrongMagic = original
        wrongMagic[0] = 0x42
        try wrongMagic.write(to: testImages)
        (status, text) = try simulate(small, in: scratch)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains("\(testImages.path): bad IDX magic"), text)
        try original.write(to: testImages)

        let trainLabels = scratch.appendingPathComponent("train-labels-idx1-ubyte")
        try Data(TinyIDX.labels(count: 99, seed: 1)).write(to: trainLabels)
        (status, text) = try simulate(small, in: scratch)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains("holds 100 images but train-labels-idx1-ubyte holds 99 labels"), text)

        try FileManager.default.removeItem(at: trainLabels)
        (status, text) = try simulate(small, in: scratch)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains("missing train-labels-idx1-ubyte"), text)
    }

    func testBadTopologyAndFlags_NameTheLineOrFlag() throws {
        let scratch = try temporaryDirectory("badflags")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let file = scratch.appendingPathComponent("bad.edges")
        try "4\n0 1\n1 2\n2 7\n".write(to: file, atomically: true, encoding: .utf8)
        var (status, text) = try simulate(
            ["--workers", "4", "--topology", file.path, "--data", "synthetic"], in: scratch)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains("\(file.path):4: node id out of range"), text)

        let ring16 = packageRoot.appendingPathComponent("topologies/ring-16.edges").path
        (status, text) = try simulate(["--workers", "8", "--topology", ring16, "--data", "synthetic"], in: scratch)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains("declares 16 nodes but --workers is 8"), text)

        (status, text) = try simulate(["--model", "784-x-10", "--data", "synthetic"], in: scratch)
        XCTAssertTrue(text.contains("--model") && text.contains("'x'"), text)
        (status, text) = try simulate(["--partition", "dirichlet:0", "--data", "synthetic"], in: scratch)
        XCTAssertTrue(text.contains("--partition"), text)
        (status, text) = try simulate(["--data", scratch.appendingPathComponent("nope").path], in: scratch)
        XCTAssertTrue(text.contains("not a directory"), text)
        (status, text) = try simulate(["--model", "64-10", "--data", "synthetic"], in: scratch)
        XCTAssertTrue(text.contains("--model 64-10 takes 64 inputs but --data synthetic has 784 features"), text)
        (status, text) = try simulate(["--model", "784-5", "--data", "synthetic"], in: scratch)
        XCTAssertTrue(text.contains("has 5 outputs but --data synthetic has 10 classes"), text)
        let used = scratch.appendingPathComponent("used")
        let first = try Child(
            try dsgdBinary(),
            [
                "simulate", "--workers", "2", "--rounds", "1", "--model", "784-10", "--data", "synthetic", "--run-dir",
                used.path,
            ],
            output: scratch.appendingPathComponent("first.log"))
        XCTAssertEqual(first.wait(seconds: 60), 0, first.text)
        let second = try Child(
            try dsgdBinary(),
            [
                "simulate", "--workers", "2", "--rounds", "1", "--model", "784-10", "--data", "synthetic", "--run-dir",
                used.path,
            ],
            output: scratch.appendingPathComponent("second.log"))
        XCTAssertNotEqual(second.wait(seconds: 60), 0)
        XCTAssertTrue(second.text.contains("already holds a run report"), second.text)
        (status, text) = try simulate(["--lr-schedule", "wavy", "--data", "synthetic"], in: scratch)
        XCTAssertTrue(text.contains("--lr-schedule"), text)
        XCTAssertNotEqual(status, 0)
        // Batch norm and the large-batch regime.
        for (arguments, expected) in [
            (
                ["--model", "784-32-10:bn", "--batch", "8", "--virtual-batch-size", "3"],
                "--virtual-batch-size: must divide"
            ),
            (["--model", "784-32-10", "--virtual-batch-size", "4"], "the model 784-32-10 has no batch norm"),
            (["--model", "cnn:28x28x1-16-32-64-10"], "divisible by 2"),
            (["--lr-scaling", "sqrt"], "need --reference-batch"),
            (["--running-stats", "sometimes"], "--running-stats"),
            (["--clip-norm", "0"], "--clip-norm: must be positive"),
            (["--workers", "20000", "--topology", "solo"], "cannot be split across 20000 workers"),
            (["--personalization", "fedbn"], "fedbn needs a model with batch norm"),
            (["--personalization", "ditto", "--ditto-lambda=-1"], "--ditto-lambda: must be ≥ 0"),
            (["--personalization", "magic"], "--personalization"),
            (["--personal-layers", "layers.9"], "'layers.9' names no parameter slice"),
            (["--client-momentum", "keep"], "--client-momentum: applies to federated runs"),
            (["--federated", "fedavg", "--client-momentum", "sometimes"], "--client-momentum"),
        ] {
            (status, text) = try simulate(arguments + ["--data", "synthetic"], in: scratch)
            XCTAssertNotEqual(status, 0, "\(arguments)")
            XCTAssertTrue(text.contains(expected), "\(arguments): \(text)")
        }
    }
}

final class RerunTests: XCTestCase {
    /// A run repeated from its config.json gives the same numbers.
    func testRerunFromConfig_GivesTheSameNumbers() throws {
        let scratch = try temporaryDirectory("rerun")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let first = scratch.appendingPathComponent("first")
        let original = try Child(
            try dsgdBinary(),
            [
                "simulate", "--workers", "3", "--rounds", "6", "--model", "784-8-10", "--data", "synthetic:7",
                "--partition",
                "dirichlet:0.5", "--momentum", "0.9", "--nesterov", "--lr-schedule", "cosine", "--warmup-steps", "2",
                "--algorithm", "cta", "--seed", "11", "--eval-every", "3", "--run-dir", first.path,
            ], output: scratch.appendingPathComponent("first.log"))
        XCTAssertEqual(original.wait(seconds: 60), 0, original.text)
        let second = scratch.appendingPathComponent("second")
        let rerun = try Child(
            try dsgdBinary(),
            ["simulate", "--config", first.appendingPathComponent("config.json").path, "--run-dir", second.path],
            output: scratch.appendingPathComponent("second.log"))
        XCTAssertEqual(rerun.wait(seconds: 60), 0, rerun.text)
        try assertSameRecords(
            first, second, count: 6,
            keys: ["train_loss", "learning_rate", "consensus_distance_sq", "test_accuracy", "test_loss"])
        let a = try jsonLines(first.appendingPathComponent("rounds.jsonl"))
        XCTAssertNotEqual(a.map { $0["learning_rate"] as? Double }.compactMap { $0 }.count, 0)
    }
}

final class ConfigurationFileTests: XCTestCase {
    /// Out-of-range flags and hand-edited config.json files get an error naming the field before
    /// anything runs (they used to pass and crash at the first sharpness round, or on decoding).
    func testOutOfRangeFlagsAndEditedConfigs_NameTheField() throws {
        let scratch = try temporaryDirectory("config-file")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let small = ["--workers", "2", "--rounds", "2", "--model", "784-8-10", "--data", "synthetic"]
        var (status, text) = try simulate(small + ["--perturbation-samples", "-1"], in: scratch)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains("--perturbation-samples"), text)
        XCTAssertFalse(text.contains("Fatal error"), text)

        (status, text) = try simulate(small + ["--sharpness-every", "0"], in: scratch)
        XCTAssertEqual(status, 0, text)
        let config = scratch.appendingPathComponent("run/config.json")
        let original = try String(contentsOf: config, encoding: .utf8)
        func edited(_ change: (inout [String: Any]) -> Void) throws -> URL {
            var manifest = try JSONSerialization.jsonObject(with: Data(original.utf8)) as! [String: Any]
            var configuration = manifest["configuration"] as! [String: Any]
            change(&configuration)
            manifest["configuration"] = configuration
            let url = scratch.appendingPathComponent("edited-\(UUID().uuidString.prefix(6)).json")
            try JSONSerialization.data(withJSONObject: manifest).write(to: url)
            return url
        }
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            (
                "--perturbation-samples",
                { c in
                    var sharpness = c["sharpness"] as! [String: Any]
                    sharpness["perturbation_samples"] = -3
                    c["sharpness"] = sharpness
                }
            ),
            (
                "--model",
                { c in
                    var model = c["model"] as! [String: Any]
                    model["widths"] = [784, 0, 10]
                    c["model"] = model
                }
            ),
            ("--batch", { c in c["batchSize"] = 0 }),
            (
                "--momentum",
                { c in
                    var optimizer = c["optimizer"] as! [String: Any]
                    optimizer["momentum"] = 1.5
                    c["optimizer"] = optimizer
                }
            ),
            (
                "graph",
                { c in
                    var topology = c["topology"] as! [String: Any]
                    var fixed = topology["fixed"] as! [String: Any]
                    var inner = fixed["_0"] as! [String: Any]
                    var graph = inner["graph"] as! [String: Any]
                    graph["outNeighbors"] = [[1, 7], [0]]
                    inner["graph"] = graph
                    fixed["_0"] = inner
                    topology["fixed"] = fixed
                    c["topology"] = topology
                }
            ),
        ]
        for (field, change) in cases {
            (status, text) = try simulate(["--config", try edited(change).path], in: scratch)
            XCTAssertNotEqual(status, 0, field)
            XCTAssertTrue(text.contains(field), "\(field): \(text)")
            XCTAssertFalse(text.contains("Fatal error"), text)
        }
    }
}

final class BiasedAverageTests: XCTestCase {
    /// Uniform weights on an irregular graph converge to a π-weighted average: refused with the
    /// deviation named unless --allow-biased-average, which runs it and records why in the events.
    func testBiasedAverage_RefusedUnlessAllowed_ThenRecorded() throws {
        let scratch = try temporaryDirectory("biased")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let flags = [
            "--workers", "5", "--rounds", "2", "--model", "784-8-10", "--data", "synthetic", "--topology", "star",
            "--weights", "uniform", "--sharpness-every", "0",
        ]
        var (status, text) = try simulate(flags, in: scratch)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains("--topology"), text)
        XCTAssertTrue(text.contains("π-weighted average"), text)
        XCTAssertTrue(text.contains("--allow-biased-average"), text)
        (status, text) = try simulate(flags + ["--allow-biased-average"], in: scratch)
        XCTAssertEqual(status, 0, text)
        XCTAssertTrue(text.contains("warning: --topology star"), text)
        let summary = try json(scratch.appendingPathComponent("run/summary.json"))
        let events = try XCTUnwrap(summary["events"] as? [String])
        XCTAssertTrue(events.contains { $0.contains("π-weighted average") && $0.contains("worker 0") }, "\(events)")
        let html = try String(contentsOf: scratch.appendingPathComponent("run/report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("π-weighted average"))
    }
}
