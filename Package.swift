// swift-tools-version:6.0
import PackageDescription

// Pure targets (LearningCore, Optimizers, Datasets, Topologies, Algorithms, Diagnostics, Wire, Transport,
// Machines, and RunRecords' types) never link libzmq; only ZeroMQTransport does; Runtime holds the shells.
// See ../shared/STYLE.md for the layout; Tests/RuntimeTests/ArchitectureTests.swift checks the rooms.
let package = Package(
    name: "dsgd",
    products: [
        .executable(name: "dsgd", targets: ["dsgd"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CZeroMQ"),
        .systemLibrary(name: "COpenBLAS"),
        .systemLibrary(name: "CZlib"),
        .target(name: "CKernels"),
        .target(name: "LearningCore", dependencies: ["COpenBLAS", "CKernels"]),
        .target(name: "Optimizers", dependencies: ["LearningCore"]),
        .target(name: "Datasets", dependencies: ["LearningCore", "CZlib"]),
        .target(name: "Topologies", dependencies: ["LearningCore", "COpenBLAS"]),
        .target(name: "Diagnostics", dependencies: ["LearningCore", "Datasets"]),
        .target(name: "Algorithms", dependencies: ["LearningCore", "Optimizers", "Topologies", "Datasets"]),
        .target(name: "Wire", dependencies: ["LearningCore"]),
        .target(name: "Transport", dependencies: ["Wire"]),
        .target(name: "ZeroMQTransport", dependencies: ["Transport", "Wire", "CZeroMQ", "SharedMemory"]),
        .target(name: "CSharedMemory"),
        .target(name: "SharedMemory", dependencies: ["CSharedMemory", "LearningCore"]),
        // What a run is and what it recorded (configuration, rounds, summary, manifest): the leaf
        // that reports read; no machines, no shells.
        .target(
            name: "RunRecords",
            dependencies: ["Algorithms", "Diagnostics", "Datasets", "Topologies", "Optimizers", "Transport"]
        ),
        // The worker and coordinator as state machines, C-SGD's all-reduce round, the messages:
        // pure (no threads, processes, sockets or files; `ArchitectureTests` checks).
        .target(
            name: "Machines",
            dependencies: ["RunRecords", "Algorithms", "Diagnostics", "Transport", "Wire", "Datasets", "Topologies"]
        ),
        // The shells: threads, files, data loading, the simulation driver.
        .target(
            name: "Runtime",
            dependencies: [
                "Machines", "RunRecords", "Algorithms", "Diagnostics", "Transport", "Wire", "Datasets", "Topologies",
            ]
        ),
        .target(name: "Reports", dependencies: ["RunRecords", "Algorithms", "Diagnostics", "Topologies"]),
        // Sweep specs, grids and the queue of cells: pure (the YAML text is parsed, never read here).
        .target(name: "Sweeps", dependencies: [.product(name: "Yams", package: "Yams")]),
        .target(
            name: "_TestSupport", dependencies: ["LearningCore", "Optimizers", "Datasets", "Topologies", "Algorithms"]),
        .executableTarget(
            name: "dsgd",
            dependencies: [
                "Runtime", "Reports", "ZeroMQTransport", "SharedMemory", "Transport", "Sweeps",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // A test tool (the hostile-input test's attacker), kept out of the user's binary.
        .executableTarget(
            name: "dsgd-fuzz-peer",
            dependencies: [
                "ZeroMQTransport", "Wire", "LearningCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "LearningCoreTests", dependencies: ["LearningCore", "_TestSupport"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "_TestSupport"]),
        .testTarget(
            name: "TopologiesTests", dependencies: ["Topologies", "Algorithms", "LearningCore", "_TestSupport"]),
        .testTarget(
            name: "DiagnosticsTests", dependencies: ["Diagnostics", "LearningCore", "Datasets", "_TestSupport"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "_TestSupport"]),
        .testTarget(name: "OptimizersTests", dependencies: ["Optimizers", "LearningCore"]),
        .testTarget(name: "AlgorithmsTests", dependencies: ["Algorithms", "LearningCore", "Optimizers", "Datasets"]),
        .testTarget(name: "ReportsTests", dependencies: ["Reports", "RunRecords"]),
        .testTarget(
            name: "RuntimeTests",
            dependencies: [
                "Runtime", "Machines", "RunRecords", "Algorithms", "Diagnostics", "Transport", "_TestSupport",
            ],
            // Read by path (RecordsFingerprintTests), not bundled.
            exclude: ["Fixtures"]
        ),
        .testTarget(name: "SharedMemoryTests", dependencies: ["SharedMemory"]),
        .testTarget(name: "SweepsTests", dependencies: ["Sweeps"]),
        .testTarget(name: "ZeroMQTransportTests", dependencies: ["ZeroMQTransport", "Transport", "Wire", "CZeroMQ"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "Runtime", "Reports", "Algorithms", "Datasets", "Topologies", "Diagnostics", "_TestSupport", "dsgd",
                "dsgd-fuzz-peer", "SharedMemory",
            ]
        ),
    ]
)
