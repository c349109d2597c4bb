// swift-tools-version: 6.0
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "Topsail",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "topsail", targets: ["topsail"]),
    ],
    dependencies: [
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.30.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.30.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        // Pure domain: event envelopes, stream ids, the EventStore port. No I/O imports.
        .target(name: "EventLog", swiftSettings: strict),
        // Pure domain: Spinnaker pipeline JSON, validation, statuses and the stage DAG.
        .target(name: "Pipelines", dependencies: ["EventLog", .product(name: "Yams", package: "Yams")], swiftSettings: strict),
        // Pure: Topsail's ${…} expression language (Spinnaker's SpEL subset), sandboxed.
        .target(name: "Expressions", dependencies: ["EventLog"], swiftSettings: strict),
        // Pure domain: executions as events, and one decision handler per message.
        .target(name: "Orchestration", dependencies: ["Pipelines", "EventLog"], swiftSettings: strict),
        // librdkafka's C API; only the Kafka module may import it.
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PostgresEventStore",
            dependencies: [
                "EventLog",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Relay",
            dependencies: [
                "EventLog", "Kafka", "PostgresEventStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The engine: the orchestrator's and worker's interpreters of ExecutionPolicy, the lanes
        // that feed them, the in-process handoff, timers, partition leases and ExecutionCommands.
        .target(
            name: "PipelineEngine",
            dependencies: [
                "EventLog", "Pipelines", "Orchestration", "Expressions", "Kafka", "PostgresEventStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Who may do what: identities and tokens, application permissions, the audit log, and the
        // versioned documents (applications, pipeline configurations) permissions live in.
        .target(
            name: "Access",
            dependencies: [
                "EventLog", "Pipelines", "PostgresEventStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The stage types a worker runs: script (sandboxed), webhook, wait, child pipeline, variables…
        .target(
            name: "StageRunners",
            dependencies: [
                "EventLog", "Pipelines", "Orchestration", "PipelineEngine", "Access", "Clouds",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Read models: the projector and its tables, execution views, the supervisor's queries.
        .target(
            name: "ReadModels",
            dependencies: [
                "EventLog", "Pipelines", "Orchestration", "Expressions", "PipelineEngine", "Access", "PostgresEventStore", "Clouds",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Trigger intake (Echo's and Igor's jobs): deliveries parsed, triggers matched, receipts
        // recorded, executions started; trigger secrets sealed and signatures checked.
        .target(
            name: "Triggers",
            dependencies: [
                "EventLog", "Pipelines", "PipelineEngine", "Access", "PostgresEventStore", "Kafka",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The `notifier` role: reactions to execution events outside the engine (pipeline
        // triggers of other pipelines, notifications, CDEvents).
        .target(
            name: "Notifications",
            dependencies: [
                "EventLog", "Pipelines", "Orchestration", "Expressions", "PipelineEngine", "ReadModels", "Triggers", "Access", "Kafka", "PostgresEventStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The HTTP API (Gate's paths where Spinnaker has them).
        .target(
            name: "API",
            dependencies: [
                "EventLog", "Pipelines", "Orchestration", "Expressions", "PipelineEngine", "Access", "ReadModels", "StageRunners",
                "Triggers", "Clouds", "PostgresEventStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            resources: [.copy("UI")],
            swiftSettings: strict
        ),
        // Child processes with every signal unblocked (pgbench, podman).
        .target(name: "Processes", swiftSettings: strict),
        // Clusters (Clouddriver's job): the provider port, accounts, Frigga names, and the podman provider.
        .target(
            name: "Clouds",
            dependencies: [
                "EventLog", "Access", "Processes",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // What every command shares: the database and Kafka options, errors, the database helpers.
        .target(
            name: "CLISupport",
            dependencies: [
                "Kafka", "PostgresEventStore", "Processes",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // `topsail bench …`: each benchmark against a baseline measured in the same run.
        .target(
            name: "Benchmarks",
            dependencies: [
                "EventLog", "Kafka", "PostgresEventStore", "Relay", "Pipelines", "Orchestration", "PipelineEngine", "Access", "ReadModels",
                "StageRunners", "Triggers", "API", "CLISupport", "Processes", "Clouds",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TopsailCLI",
            dependencies: [
                "EventLog", "Kafka", "PostgresEventStore", "Relay", "Pipelines", "Orchestration", "PipelineEngine", "Access", "ReadModels",
                "StageRunners", "Triggers", "Notifications", "Clouds", "API", "CLISupport", "Benchmarks",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "topsail", dependencies: ["TopsailCLI"], swiftSettings: strict),
        .testTarget(name: "EventLogTests", dependencies: ["EventLog"], swiftSettings: strict),
        .testTarget(name: "PipelinesTests", dependencies: ["Pipelines", "EventLog"], swiftSettings: strict),
        .testTarget(name: "OrchestrationTests", dependencies: ["Orchestration", "Pipelines", "EventLog"], swiftSettings: strict),
        .testTarget(name: "ExpressionsTests", dependencies: ["Expressions", "EventLog"], swiftSettings: strict),
        .testTarget(
            name: "PipelineEngineTests", dependencies: ["PipelineEngine", "StageRunners", "Kafka", "Orchestration", "Pipelines", "Expressions", "EventLog"],
            swiftSettings: strict),
        .testTarget(name: "AccessTests", dependencies: ["Access"], swiftSettings: strict),
        .testTarget(name: "ReadModelsTests", dependencies: ["ReadModels", "Orchestration", "Pipelines", "EventLog"], swiftSettings: strict),
        .testTarget(name: "StageRunnersTests", dependencies: ["StageRunners", "PipelineEngine", "Orchestration", "Pipelines", "EventLog"], swiftSettings: strict),
        .testTarget(name: "PostgresEventStoreTests", dependencies: ["PostgresEventStore"], swiftSettings: strict),
        .testTarget(name: "APIUnitTests", dependencies: ["API"], swiftSettings: strict),
        .testTarget(name: "CloudsTests", dependencies: ["Clouds", "EventLog"], swiftSettings: strict),
        .testTarget(name: "TriggersTests", dependencies: ["Triggers", "Access", "Pipelines", "EventLog", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: strict),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "EventLog", "Kafka", "PostgresEventStore", "Relay", "PipelineEngine", "Access", "ReadModels", "Triggers", "Clouds", "TopsailCLI", "Processes",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
    ]
)
