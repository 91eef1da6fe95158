import Foundation
import XCTest

/// Several "hosts": the coordinator and each worker in a network namespace of its own, joined by
/// veth pairs on a bridge, each with its own address (10.231.x.0/24, inside this test's own
/// namespaces). The run must complete and match the single-host simulation for the same seed.
final class NetworkNamespaceTests: XCTestCase {
    private func sh(_ command: String) -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return (-1, "\(error)") }
        process.waitUntilExit()
        return (
            process.terminationStatus, String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        )
    }

    func testCoordinatorAndWorkersInSeparateNamespaces_MatchTheSingleHostRun() throws {
        guard getuid() == 0 else {
            print("NetworkNamespaceTests: skipped: creating network namespaces needs root")
            throw XCTSkip("needs root")
        }
        let tag = String(getpid() % 10_000)
        let subnet = "10.231.\(Int(tag)! % 200 + 20)"
        let bridge = "dbr\(tag)"
        let hosts = (0..<4).map { "dsgd\(tag)h\($0)" }  // 0: coordinator, 1...3: workers
        guard sh("ip link add \(bridge) type bridge && ip link set \(bridge) up").0 == 0 else {
            print("NetworkNamespaceTests: skipped: this machine does not allow creating bridges")
            throw XCTSkip("no bridges here")
        }
        defer {
            for host in hosts { _ = sh("ip netns del \(host)") }
            _ = sh("ip link del \(bridge)")
        }
        for (index, host) in hosts.enumerated() {
            let outside = "dv\(tag)\(index)"
            let inside = "dv\(tag)\(index)p"
            let (status, output) = sh(
                """
                ip netns add \(host) && ip link add \(outside) type veth peer name \(inside) && ip link set \(inside) netns \(host) \
                && ip link set \(outside) master \(bridge) && ip link set \(outside) up \
                && ip netns exec \(host) ip addr add \(subnet).\(index + 1)/24 dev \(inside) \
                && ip netns exec \(host) ip link set \(inside) up && ip netns exec \(host) ip link set lo up
                """)
            XCTAssertEqual(status, 0, output)
        }
        let binary = try dsgdBinary()
        let scratch = try temporaryDirectory("netns")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let flags = [
            "--workers", "3", "--rounds", "30", "--model", "784-16-10", "--data", "synthetic", "--seed", "2",
            "--sharpness-every", "0",
        ]
        let ip = URL(fileURLWithPath: "/usr/sbin/ip").path
        let coordinator = try Child(
            URL(fileURLWithPath: ip),
            ["netns", "exec", hosts[0], binary.path, "coordinator"] + flags + [
                "--bind", "tcp://\(subnet).1:29517", "--allow-remote", "--run-dir", run.path, "--peer-timeout", "30",
            ], output: scratch.appendingPathComponent("coordinator.log"))
        usleep(300_000)
        let workers = try (1...3).map { index in
            try Child(
                URL(fileURLWithPath: ip),
                [
                    "netns", "exec", hosts[index], binary.path, "worker", "--coordinator", "tcp://\(subnet).1:29517",
                    "--bind",
                    "tcp://\(subnet).\(index + 1):*", "--allow-remote", "--rank", "\(index - 1)", "--peer-timeout",
                    "30",
                ], output: scratch.appendingPathComponent("worker-\(index).log"))
        }
        for worker in workers { XCTAssertEqual(worker.wait(seconds: 90), 0, worker.text) }
        XCTAssertEqual(coordinator.wait(seconds: 90), 0, coordinator.text)
        XCTAssertTrue(coordinator.text.contains("listening on tcp://\(subnet).1:29517"), coordinator.text)

        let simulated = scratch.appendingPathComponent("sim")
        let simulate = try Child(
            binary, ["simulate"] + flags + ["--run-dir", simulated.path],
            output: scratch.appendingPathComponent("sim.log"))
        XCTAssertEqual(simulate.wait(seconds: 60), 0, simulate.text)
        try assertSameRecords(run, simulated, count: 30, keys: ["train_loss", "consensus_distance_sq"])
    }
}
