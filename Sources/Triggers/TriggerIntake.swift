import Access
import Crypto
import EventLog
import Foundation
import Logging
import Metrics
import PipelineEngine
import Pipelines
import PostgresEventStore
import PostgresNIO

/// The outcome of a delivery, as answered to its sender and kept in its receipt.
public struct Receipt: Sendable {
    public let delivery: Delivery
    /// True when the delivery's key was received before: nothing new started.
    public let duplicate: Bool
    public let decisions: [TriggerDecision]

    public var started: [TriggerDecision] { decisions.filter { $0.executionID != nil } }
    /// Some trigger would have fired but the delivery's proof did not hold (bad or missing signature).
    public var refusedForProof: Bool {
        decisions.contains { if case .notMatched(_, true) = $0.outcome, $0.reasonIsProof { true } else { false } }
    }
}

extension TriggerDecision {
    static let proofPrefix = "signature: "
    var reasonIsProof: Bool {
        if case .notMatched(let reason, _) = outcome { return reason.hasPrefix(Self.proofPrefix) }
        return false
    }
}

/// Trigger intake: every delivery is first appended as a receipt (`trigger.received`, on the
/// stream of its dedupe key, written only if that stream is new), with what it decided for every
/// trigger listening to it; the executions it starts follow from the receipt, with ids derived
/// from the key, and `trigger.processed` closes it. A retried delivery finds its receipt and
/// starts nothing new; a receipt left open by a crash is finished by ``finishOpenReceipts``.
public struct TriggerIntake: Sendable {
    public static let category = "receipt"
    public static let receivedType = "trigger.received"
    public static let processedType = "trigger.processed"
    /// Headers kept in a receipt; never credentials or signatures.
    static let keptHeaders: Set<String> = [
        "content-type", "user-agent", "x-github-event", "x-github-delivery", "x-gitlab-event", "x-gitlab-event-uuid",
        "x-event-key", "x-request-uuid", "x-hook-uuid", "idempotency-key",
    ]

    let client: PostgresClient
    let repository: ExecutionRepository
    let seal: SecretSeal?
    let logger: Logger
    /// The listening pipelines per probe, with the state of the projection they were read at.
    let listeners = BoundedCache<String, ListenerSnapshot>(capacity: 1_000)

    struct ListenerSnapshot: Sendable {
        let marker: String
        let pipelines: [PipelineConfig]
    }

    public init(client: PostgresClient, repository: ExecutionRepository, seal: SecretSeal?, logger: Logger) {
        self.client = client
        self.repository = repository
        self.seal = seal
        self.logger = logger
    }

    var store: any EventStore { repository.eventStore }

    public static func stream(of dedupeKey: String) throws -> StreamID {
        try StreamID(category: category, id: Signatures.hex(SHA256.hash(data: Array(dedupeKey.utf8))).prefix(40).description)
    }

    /// Takes a delivery: records its receipt, starts what it fires, and answers. `body` and
    /// `proof` are the raw body and the headers that may prove the sender holds a trigger's
    /// secret; neither is kept.
    /// With `recordUnheard` false, a delivery no trigger listens to leaves no receipt (for the
    /// engine's own deliveries: every completed execution is offered to pipeline triggers).
    public func receive(
        _ delivery: Delivery, body: [UInt8], proof: Signatures.Proof, headers: [String: String], sender: String?, recordUnheard: Bool = true
    ) async throws -> Receipt {
        let stream = try Self.stream(of: delivery.dedupeKey)
        // A delivery with a key of its own (its event id) cannot have been received before; the
        // others are looked up first, so that a retry weighs nothing again.
        if delivery.dedupeKey != "event/\(delivery.eventID)", let existing = try await receipt(stream) {
            return try await finish(existing, stream: stream, duplicate: true)
        }
        let pipelines = try await listeningPipelines(delivery)
        var prepared: [String: Prepared] = [:]
        var decisions: [TriggerDecision] = []
        for var consideration in TriggerDecider.consider(delivery, pipelines: pipelines) {
            if consideration.decision.executionID != nil {
                switch try await prepare(consideration, delivery: delivery, body: body, proof: proof) {
                case .success(let ready): prepared[ready.executionID] = ready
                case .failure(let refusal): consideration.decision.outcome = .notMatched(reason: refusal.reason, refused: refusal.refused)
                }
            }
            decisions.append(consideration.decision)
        }
        if decisions.isEmpty, !recordUnheard { return Receipt(delivery: delivery, duplicate: false, decisions: []) }
        var fields = delivery.json.objectValue ?? [:]
        fields["decisions"] = .array(decisions.map(\.json))
        fields["headers"] = .object(Dictionary(uniqueKeysWithValues: headers.filter { Self.keptHeaders.contains($0.key) }.map { ($0.key, JSONValue.string($0.value)) }))
        let metadata = EventMetadata(correlationID: delivery.eventID, actor: sender ?? "anonymous", source: "trigger-intake")
        do {
            _ = try await store.append(to: stream, expected: .noStream, events: [
                NewEvent(type: Self.receivedType, payload: try JSONText(encoding: JSONValue.object(fields)), metadata: metadata),
            ])
        } catch EventStoreError.versionConflict {
            // The same delivery, received meanwhile by another request or process.
            guard let existing = try await receipt(stream) else { throw EngineError("the receipt of \(delivery.summary) conflicted but cannot be read") }
            return try await finish(existing, stream: stream, duplicate: true)
        }
        Counter(label: "topsail_trigger_receipts_total", dimensions: [("origin", Self.kind(delivery))]).increment()
        let stored = StoredReceipt(delivery: delivery, decisions: decisions, processed: false, version: 1)
        return try await finish(stored, stream: stream, duplicate: false, prepared: prepared)
    }

    /// Finishes receipts a crash left open (received, not processed) for longer than `grace`:
    /// their executions start (those started already are found so), and they are closed.
    /// Returns how many were finished.
    /// `within` bounds how far back it looks (nil: the whole log, as a process's first look does).
    @discardableResult
    public func finishOpenReceipts(olderThan grace: Duration, within: Duration? = nil) async throws -> Int {
        let seconds = Double(grace.components.seconds) + Double(grace.components.attoseconds) / 1e18
        let window = within.map { Double($0.components.seconds) } ?? 0
        var streams: [String] = []
        do {
            let rows = try await client.query("""
                SELECT r.stream_id FROM events r
                 WHERE r.event_type = \(Self.receivedType) AND r.recorded_at < now() - make_interval(secs => \(seconds))
                   AND (\(window) = 0 OR r.recorded_at > now() - make_interval(secs => \(window)))
                   AND NOT EXISTS (SELECT 1 FROM events p WHERE p.stream_id = r.stream_id AND p.event_type = \(Self.processedType))
                 ORDER BY r.position LIMIT 100
                """, logger: logger)
            for try await stream in rows.decode(String.self) { streams.append(stream) }
        } catch {
            throw DatabaseError.wrapping(error, doing: "find open trigger receipts")
        }
        var finished = 0
        for id in streams {
            let stream = try StreamID(id)
            guard let open = try await receipt(stream), !open.processed else { continue }
            _ = try await finish(open, stream: stream, duplicate: false)
            logger.warning("an open trigger receipt was finished after a crash", metadata: ["receipt": "\(id)", "delivery": "\(open.delivery.summary)"])
            finished += 1
        }
        return finished
    }

    // MARK: - Receipts

    struct StoredReceipt {
        let delivery: Delivery
        let decisions: [TriggerDecision]
        let processed: Bool
        let version: Int64
    }

    func receipt(_ stream: StreamID) async throws -> StoredReceipt? {
        let events = try await store.readStream(stream, from: 1, direction: .forward, limit: 10)
        guard let received = events.first(where: { $0.type == Self.receivedType }) else { return nil }
        let payload = try received.payload.decode(JSONValue.self)
        guard let delivery = Delivery(json: payload) else { throw EngineError("the receipt \(stream) cannot be read") }
        let decisions = (payload["decisions"]?.arrayValue ?? []).compactMap(TriggerDecision.init(json:))
        return StoredReceipt(delivery: delivery, decisions: decisions, processed: events.contains { $0.type == Self.processedType },
                             version: events.last?.streamVersion ?? 1)
    }

    /// Starts the receipt's executions that are not started yet and closes it.
    private func finish(_ receipt: StoredReceipt, stream: StreamID, duplicate: Bool, prepared: [String: Prepared] = [:]) async throws -> Receipt {
        let answer = Receipt(delivery: receipt.delivery, duplicate: duplicate, decisions: receipt.decisions)
        guard !receipt.processed else { return answer }
        var started: [JSONValue] = []
        var skipped: [JSONValue] = []
        for decision in receipt.decisions {
            guard let executionID = decision.executionID else { continue }
            var ready = prepared[executionID]
            if ready == nil {
                // Prepared again from the receipt (after a crash, or for a concurrent duplicate):
                // the proof was checked when it was received.
                switch try await prepareAgain(decision, delivery: receipt.delivery) {
                case .success(let again): ready = again
                case .failure(let refusal):
                    skipped.append(["executionId": .string(executionID), "reason": .string(refusal.reason)])
                    continue
                }
            }
            guard let ready else { continue }
            do {
                _ = try await ExecutionCommands(repository: repository).trigger(
                    ready.pipeline, trigger: ready.trigger, parameters: ready.parameters,
                    metadata: EventMetadata(correlationID: executionID, causationID: receipt.delivery.eventID, actor: ready.user, source: "trigger"),
                    executionID: executionID)
            } catch EventStoreError.versionConflict {
                // Started already (by the first copy of this delivery).
            }
            started.append(.string(executionID))
        }
        do {
            var fields: [String: JSONValue] = ["executions": .array(started)]
            if !skipped.isEmpty { fields["skipped"] = .array(skipped) }
            _ = try await store.append(to: stream, expected: .exact(receipt.version), events: [
                NewEvent(type: Self.processedType, payload: try JSONText(encoding: JSONValue.object(fields)),
                         metadata: EventMetadata(correlationID: receipt.delivery.eventID, source: "trigger-intake")),
            ])
        } catch EventStoreError.versionConflict {
            // Closed meanwhile by another copy of the delivery.
        }
        return answer
    }

    // MARK: - Deciding what starts

    struct Prepared {
        let executionID: String
        let pipeline: PipelineConfig
        let trigger: JSONValue
        let parameters: [String: JSONValue]
        let user: String
    }

    struct Refusal: Error {
        let reason: String
        let refused: Bool
    }

    /// The pipelines with a trigger that may listen to the delivery, from the projection of saved
    /// pipelines (`pipeline_configs`, its triggers indexed by migration 0013).
    func listeningPipelines(_ delivery: Delivery) async throws -> [PipelineConfig] {
        let probes: [JSONValue]
        switch delivery.origin {
        case .webhook(let type, let source): probes = [[["type": .string(type), "source": .string(source)]]]
        case .git: probes = [[["type": "git"]]]
        case .build(let build): probes = Build.triggerTypes.map { [["type": .string($0), "master": .string(build.master)]] }
        case .pipeline(let completion): probes = [[["type": "pipeline", "pipeline": .string(completion.pipelineID)]]]
        case .cron: probes = [[["type": "cron"]]]
        case .cdevent(let event): probes = [[["type": "cdevents", "source": .string(event.path)]]]
        case .pubsub(let message): probes = [[["type": "pubsub", "subscriptionName": .string(message.topic)]]]
        }
        var pipelines: [PipelineConfig] = []
        do {
            let texts = try probes.map { try JSONText(encoding: $0).text }
            // Every saved pipeline changes the marker (a version grows, a row appears), so a
            // cached answer is used only while the projection is as it was read.
            var marker = ""
            for try await (count, versions) in try await client.query(
                "SELECT count(*)::bigint, coalesce(sum(version), 0)::bigint FROM pipeline_configs", logger: logger
            ).decode((Int64, Int64).self) { marker = "\(count)/\(versions)" }
            var only: String?
            if case .cron(let firing) = delivery.origin { only = firing.pipelineID }
            let cacheKey = texts.joined(separator: "|") + "|" + (only ?? "")
            if let cached = listeners[cacheKey], cached.marker == marker { return cached.pipelines }
            // A cron firing is for one pipeline's trigger; the rest listen by type and source.
            let rows = try await client.query("""
                SELECT config::text FROM pipeline_configs
                 WHERE NOT deleted AND config->'triggers' @> ANY(\(texts)::jsonb[]) AND (\(only)::text IS NULL OR pipeline_id = \(only))
                 ORDER BY application, name, pipeline_id
                """, logger: logger)
            for try await text in rows.decode(String.self) {
                if let json = try JSONText(text).decode(JSONValue.self).objectValue { pipelines.append(PipelineConfig(json: json)) }
            }
            listeners.set(ListenerSnapshot(marker: marker, pipelines: pipelines), for: cacheKey)
        } catch {
            throw DatabaseError.wrapping(error, doing: "find the pipelines whose triggers listen to \(delivery.summary)")
        }
        return pipelines
    }

    /// Checks what the delivery alone cannot: the trigger's secret against the proof, its
    /// `runAsUser`'s EXECUTE on the application, and the parameters.
    func prepare(_ consideration: TriggerDecider.Consideration, delivery: Delivery, body: [UInt8], proof: Signatures.Proof) async throws -> Result<Prepared, Refusal> {
        if let secret = consideration.trigger["secret"]?.stringValue, !secret.isEmpty {
            let plain: String
            if SecretSeal.isSealed(secret) {
                guard let seal else {
                    return .failure(Refusal(reason: TriggerDecision.proofPrefix + "the trigger's secret is sealed and this process has no secrets key (TOPSAIL_SECRETS_KEY)", refused: true))
                }
                do { plain = try seal.open(secret) } catch {
                    return .failure(Refusal(reason: TriggerDecision.proofPrefix + "\(error)", refused: true))
                }
            } else {
                plain = secret
            }
            switch Signatures.verify(proof, body: body, secret: plain) {
            case .valid: break
            case .missing(let why), .invalid(let why): return .failure(Refusal(reason: TriggerDecision.proofPrefix + why, refused: true))
            }
        }
        return try await prepareAgain(consideration.decision, pipeline: consideration.pipeline, trigger: consideration.trigger, delivery: delivery)
    }

    /// Prepares a decision recorded in a receipt, with the pipeline as saved now.
    func prepareAgain(_ decision: TriggerDecision, delivery: Delivery) async throws -> Result<Prepared, Refusal> {
        guard let pipeline = try await PipelineConfigStore(store: store).load(decision.pipelineID) else {
            return .failure(Refusal(reason: "the pipeline was deleted before its execution started", refused: false))
        }
        guard let trigger = pipeline.json["triggers"]?.arrayValue?.dropFirst(decision.triggerIndex).first?.objectValue,
              trigger["type"]?.stringValue == decision.triggerType else {
            return .failure(Refusal(reason: "the pipeline's trigger \(decision.triggerIndex) changed before its execution started", refused: false))
        }
        return try await prepareAgain(decision, pipeline: pipeline, trigger: trigger, delivery: delivery)
    }

    private func prepareAgain(_ decision: TriggerDecision, pipeline: PipelineConfig, trigger: [String: JSONValue], delivery: Delivery) async throws -> Result<Prepared, Refusal> {
        guard let executionID = decision.executionID else { return .failure(Refusal(reason: "not started", refused: false)) }
        // A trigger runs as its service account, or as nobody in particular (which only an
        // application without permissions lets run), as in Spinnaker.
        let caller: Caller
        if let name = trigger["runAsUser"]?.stringValue, !name.isEmpty {
            guard let account = try await Identities(store: store).serviceAccount(name) else {
                return .failure(Refusal(reason: "not permitted: runAsUser \(name) is not a service account", refused: true))
            }
            caller = account
        } else {
            caller = Caller(user: "anonymous", roles: [])
        }
        if let refusal = try await ApplicationAccess(store: store).refusal(caller, .execute, application: pipeline.application) {
            return .failure(Refusal(reason: "not permitted: \(refusal)", refused: true))
        }
        let parameters: [String: JSONValue]
        do {
            parameters = try pipeline.parameters(with: TriggerDecider.givenParameters(delivery, pipeline: pipeline))
        } catch {
            return .failure(Refusal(reason: "parameters: \(error)", refused: false))
        }
        let fired = TriggerDecider.executionTrigger(trigger, delivery: delivery, user: caller.user, parameters: parameters)
        return .success(Prepared(executionID: executionID, pipeline: pipeline, trigger: TriggerIdentity.recording(caller, in: fired),
                                 parameters: parameters, user: caller.user))
    }

    static func kind(_ delivery: Delivery) -> String {
        switch delivery.origin {
        case .webhook: "webhook"
        case .git: "git"
        case .build: "build"
        case .pipeline: "pipeline"
        case .cron: "cron"
        case .cdevent: "cdevents"
        case .pubsub: "pubsub"
        }
    }
}
