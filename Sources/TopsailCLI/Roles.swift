import Foundation
import Hummingbird
import Kafka
import Logging
import PostgresEventStore
import PostgresNIO
import Relay
import ServiceLifecycle

/// Assembles long-lived roles into one service group with graceful shutdown on SIGTERM/SIGINT.
struct Roles {
    let database: DatabaseConfiguration
    let kafka: KafkaConfiguration
    let logger: Logger

    init(options: CommonOptions) throws {
        database = try options.database()
        kafka = try options.kafka()
        logger = options.logger("topsail")
    }

    func run(relay: RelayConfiguration, http: (host: String, port: Int)?) async throws {
        let client = PostgresClient(configuration: database.clientConfiguration, backgroundLogger: logger)
        var services: [any Service] = [client]
        services.append(RelayService(configuration: relay, kafka: kafka, client: client, logger: logger))
        if let http {
            services.append(HealthEndpoint.application(client: client, host: http.host, port: http.port, logger: logger))
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        logger.info("topsail starting", metadata: ["db": "\(database)", "kafka.brokers": "\(kafka.bootstrapServers)"])
        try await group.run()
        logger.info("topsail stopped")
    }
}

/// `/health` answers while the process runs; `/ready` only while PostgreSQL answers too.
enum HealthEndpoint {
    static func application(client: PostgresClient, host: String, port: Int, logger: Logger) -> some Service {
        let router = Router()
        router.get("/health") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#)))
        }
        router.get("/ready") { _, _ in
            let ready = await databaseAnswers(client)
            let body = ready ? #"{"status":"ready"}"# : #"{"status":"unavailable","reason":"PostgreSQL does not answer"}"#
            return Response(status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                             body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "topsail"), logger: logger)
    }

    static func databaseAnswers(_ client: PostgresClient) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await client.query("SELECT 1")) != nil }
            group.addTask { (try? await Task.sleep(for: .seconds(2))) == nil ? false : false }
            defer { group.cancelAll() }
            return await group.next() ?? false
        }
    }
}
