import Crypto
import EventLog
import Foundation

/// A delivery to the trigger intake, parsed: what arrived, from where, and the key that makes a
/// sender's retry the same receipt.
public struct Delivery: Sendable, Hashable {
    public enum Origin: Sendable, Hashable {
        /// `POST /webhooks/{type}/{source}`.
        case webhook(type: String, source: String)
        /// `POST /webhooks/git/{provider}`: a push (or another repository event).
        case git(GitEvent)
        /// `POST /ci/builds/{master}`: a CI build's notification.
        case build(Build)
        /// Another pipeline's execution completed (the notifier hands these over).
        case pipeline(PipelineCompletion)
        /// A cron trigger's fire time came (the scheduler's cron clock hands these over).
        case cron(CronFiring)
        /// `POST /webhooks/cdevents/{source}`: a CDEvent as a CloudEvent.
        case cdevent(CloudEventAttributes)
        /// A message on a Kafka topic a pubsub trigger subscribes to.
        case pubsub(PubsubMessage)
    }

    public let origin: Origin
    /// The body as JSON (`trigger.payload`).
    public let payload: JSONValue
    /// Echo's `eventId`, answered and copied to each execution's `trigger.eventId`.
    public let eventID: String
    /// Deliveries with the same key are one receipt: the sender's delivery id, the build's
    /// (master, job, number), or the client's `Idempotency-Key`; else the event id (every
    /// delivery is new).
    public let dedupeKey: String

    public init(origin: Origin, payload: JSONValue, eventID: String, dedupeKey: String) {
        self.origin = origin
        self.payload = payload
        self.eventID = eventID
        self.dedupeKey = dedupeKey
    }

    /// The trigger types that listen to this delivery.
    public var triggerTypes: [String] {
        switch origin {
        case .webhook(let type, _): [type]
        case .git: ["git"]
        case .build: Build.triggerTypes
        case .pipeline: ["pipeline"]
        case .cron: ["cron"]
        case .cdevent: ["cdevents"]
        case .pubsub: ["pubsub"]
        }
    }

    /// A short description for logs and answers: `webhook/deploys`, `git/github`, `build/ci-main`.
    public var summary: String {
        switch origin {
        case .webhook(let type, let source): "\(type)/\(source)"
        case .git(let event): "git/\(event.provider)"
        case .build(let build): "build/\(build.master)/\(build.job)#\(build.number)"
        case .pipeline(let completion): "pipeline/\(completion.pipelineID) \(completion.status)"
        case .cron(let firing): "cron/\(firing.pipelineID)#\(firing.triggerIndex) at \(firing.scheduledText)"
        case .cdevent(let event): "cdevents/\(event.path) \(event.type)"
        case .pubsub(let message): "pubsub/kafka/\(message.topic)[\(message.partition)]@\(message.offset)"
        }
    }

    /// The id of the execution a trigger starts for this delivery: the same for a retried
    /// delivery, so the execution's stream (appended with "no stream yet") starts once.
    public func executionID(pipelineID: String, trigger index: Int) -> String {
        let digest = Array(SHA256.hash(data: Array("\(dedupeKey)\u{1F}\(pipelineID)\u{1F}\(index)".utf8)).prefix(16))
        var bytes = digest
        bytes[6] = (bytes[6] & 0x0F) | 0x50  // a name-based UUID (version 5 layout, SHA-256 digest)
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let uuid = UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                               bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
        return uuid.uuidString.lowercased()
    }
}

/// A repository event from GitHub, GitLab or Bitbucket, reduced to what git triggers match.
public struct GitEvent: Sendable, Hashable {
    public var provider: String
    public var project: String
    public var slug: String
    public var branch: String
    public var hash: String
    /// The event: `push`, or `pull_request:opened` style for events with an action.
    public var action: String
}

/// A CloudEvent's attributes (the CDEvent itself is the delivery's payload).
public struct CloudEventAttributes: Sendable, Hashable {
    /// The `{source}` of the path it was posted to, which triggers name.
    public var path: String
    public var id: String
    public var type: String
    public var source: String
    public var subject: String?

    public var json: JSONValue {
        ["id": .string(id), "type": .string(type), "source": .string(source), "subject": subject.map(JSONValue.string) ?? .null]
    }
}

/// Where a pubsub message came from.
public struct PubsubMessage: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: String?
}

/// One fire time of one cron trigger.
public struct CronFiring: Sendable, Hashable {
    public var pipelineID: String
    public var triggerIndex: Int
    /// The trigger's `id` when it has one, else its index: what its firings are keyed by.
    public var triggerKey: String
    public var expression: String
    public var timeZone: String
    public var scheduledAt: Date
    /// True when the fire time passed while nobody fired it (a `misfire: fireOnce` catch-up).
    public var late: Bool
    /// For a late run: the first fire time of the gap it stands for (the one after the trigger's
    /// last receipt). Every scheduler that finds the same gap finds the same first time, whenever
    /// it looks, while the latest missed time depends on when it looked.
    public var missedSince: Date?

    public init(
        pipelineID: String, triggerIndex: Int, triggerKey: String, expression: String, timeZone: String, scheduledAt: Date, late: Bool, missedSince: Date? = nil
    ) {
        self.missedSince = missedSince
        self.pipelineID = pipelineID
        self.triggerIndex = triggerIndex
        self.triggerKey = triggerKey
        self.expression = expression
        self.timeZone = timeZone
        self.scheduledAt = scheduledAt
        self.late = late
    }

    public var scheduledText: String { scheduledAt.formatted(Date.ISO8601FormatStyle()) }

    /// Each fire time of a trigger is one receipt, whichever process fires it; so is each gap of
    /// missed fire times.
    public var dedupeKey: String {
        if late, let missedSince { return "cron/\(pipelineID)/\(triggerKey)/missed-since/\(Int64(missedSince.timeIntervalSince1970))" }
        return "cron/\(pipelineID)/\(triggerKey)/\(Int64(scheduledAt.timeIntervalSince1970))"
    }
}

/// An execution that completed, as pipeline triggers see it.
public struct PipelineCompletion: Sendable, Hashable {
    /// How many pipeline triggers led to this execution (0 for one started otherwise): a chain
    /// longer than ``maximumChain`` stops, so pipelines that trigger each other do not run forever.
    public static let maximumChain = 10

    public var executionID: String
    /// The completed execution's pipeline config id, which pipeline triggers name.
    public var pipelineID: String
    public var application: String?
    /// The execution's status, e.g. SUCCEEDED or TERMINAL.
    public var status: String
    public var chain: Int
    /// The execution as the child's `trigger.parentExecution` shows it.
    public var execution: JSONValue

    public init(executionID: String, pipelineID: String, application: String?, status: String, chain: Int, execution: JSONValue) {
        self.executionID = executionID
        self.pipelineID = pipelineID
        self.application = application
        self.status = status
        self.chain = chain
        self.execution = execution
    }

    /// The status as pipeline triggers' `status[]` names it (Echo's mapping): successful,
    /// failed, canceled or suspended.
    public var triggerStatus: String {
        switch status {
        case "SUCCEEDED": "successful"
        case "CANCELED": "canceled"
        case "SUSPENDED": "suspended"
        default: "failed"
        }
    }
}

/// A CI build's notification, reduced to what CI triggers match and Echo puts in `buildInfo`.
public struct Build: Sendable, Hashable {
    public static let triggerTypes = ["jenkins", "travis", "gitlab-ci", "concourse"]

    public var master: String
    public var job: String
    public var number: Int
    public var building: Bool
    /// SUCCESS, UNSTABLE, BUILDING, ABORTED, FAILURE, NOT_BUILT.
    public var result: String
    /// `{name, number, url, result, building, timestamp, duration, artifacts, scm}`.
    public var info: JSONValue
    public var properties: [String: JSONValue]
}

extension Delivery {
    /// The delivery as its receipt keeps it (everything but the raw body and the proofs).
    public var json: JSONValue {
        var origin: [String: JSONValue]
        switch self.origin {
        case .webhook(let type, let source):
            origin = ["kind": "webhook", "type": .string(type), "source": .string(source)]
        case .git(let event):
            origin = ["kind": "git", "provider": .string(event.provider), "project": .string(event.project), "slug": .string(event.slug),
                      "branch": .string(event.branch), "hash": .string(event.hash), "action": .string(event.action)]
        case .build(let build):
            origin = ["kind": "build", "master": .string(build.master), "job": .string(build.job), "number": .number(Double(build.number)),
                      "building": .bool(build.building), "result": .string(build.result), "buildInfo": build.info,
                      "properties": .object(build.properties)]
        case .cron(let firing):
            origin = ["kind": "cron", "pipelineId": .string(firing.pipelineID), "trigger": .number(Double(firing.triggerIndex)),
                      "triggerKey": .string(firing.triggerKey), "cronExpression": .string(firing.expression), "timeZone": .string(firing.timeZone),
                      "scheduledAt": .string(firing.scheduledText), "scheduledEpoch": .number(firing.scheduledAt.timeIntervalSince1970),
                      "late": .bool(firing.late), "missedSinceEpoch": firing.missedSince.map { .number($0.timeIntervalSince1970) } ?? .null]
        case .pubsub(let message):
            origin = ["kind": "pubsub", "system": "kafka", "topic": .string(message.topic), "partition": .number(Double(message.partition)),
                      "offset": .number(Double(message.offset)), "key": message.key.map(JSONValue.string) ?? .null]
        case .cdevent(let event):
            origin = ["kind": "cdevents", "path": .string(event.path), "id": .string(event.id), "type": .string(event.type),
                      "source": .string(event.source), "subject": event.subject.map(JSONValue.string) ?? .null]
        case .pipeline(let completion):
            origin = ["kind": "pipeline", "executionId": .string(completion.executionID), "pipelineId": .string(completion.pipelineID),
                      "application": completion.application.map(JSONValue.string) ?? .null, "status": .string(completion.status),
                      "chain": .number(Double(completion.chain)), "execution": completion.execution]
        }
        return ["origin": .object(origin), "payload": payload, "eventId": .string(eventID), "dedupeKey": .string(dedupeKey)]
    }

    public init?(json: JSONValue) {
        guard let origin = json["origin"], let eventID = json["eventId"]?.stringValue, let key = json["dedupeKey"]?.stringValue else { return nil }
        let parsed: Origin
        switch origin["kind"]?.stringValue {
        case "webhook":
            guard let type = origin["type"]?.stringValue, let source = origin["source"]?.stringValue else { return nil }
            parsed = .webhook(type: type, source: source)
        case "git":
            parsed = .git(GitEvent(
                provider: origin["provider"]?.stringValue ?? "", project: origin["project"]?.stringValue ?? "", slug: origin["slug"]?.stringValue ?? "",
                branch: origin["branch"]?.stringValue ?? "", hash: origin["hash"]?.stringValue ?? "", action: origin["action"]?.stringValue ?? ""))
        case "build":
            guard let number = origin["number"]?.intValue else { return nil }
            parsed = .build(Build(
                master: origin["master"]?.stringValue ?? "", job: origin["job"]?.stringValue ?? "", number: number,
                building: origin["building"]?.boolValue ?? false, result: origin["result"]?.stringValue ?? "",
                info: origin["buildInfo"] ?? .null, properties: origin["properties"]?.objectValue ?? [:]))
        case "pubsub":
            guard let topic = origin["topic"]?.stringValue, let partition = origin["partition"]?.intValue, let offset = origin["offset"]?.doubleValue else { return nil }
            parsed = .pubsub(PubsubMessage(topic: topic, partition: Int32(partition), offset: Int64(offset), key: origin["key"]?.stringValue))
        case "cdevents":
            guard let path = origin["path"]?.stringValue, let id = origin["id"]?.stringValue, let type = origin["type"]?.stringValue,
                  let source = origin["source"]?.stringValue else { return nil }
            parsed = .cdevent(CloudEventAttributes(path: path, id: id, type: type, source: source, subject: origin["subject"]?.stringValue))
        case "cron":
            guard let pipeline = origin["pipelineId"]?.stringValue, let index = origin["trigger"]?.intValue,
                  let epoch = origin["scheduledEpoch"]?.doubleValue else { return nil }
            parsed = .cron(CronFiring(
                pipelineID: pipeline, triggerIndex: index, triggerKey: origin["triggerKey"]?.stringValue ?? String(index),
                expression: origin["cronExpression"]?.stringValue ?? "", timeZone: origin["timeZone"]?.stringValue ?? "UTC",
                scheduledAt: Date(timeIntervalSince1970: epoch), late: origin["late"]?.boolValue ?? false,
                missedSince: origin["missedSinceEpoch"]?.doubleValue.map { Date(timeIntervalSince1970: $0) }))
        case "pipeline":
            guard let execution = origin["executionId"]?.stringValue, let pipeline = origin["pipelineId"]?.stringValue else { return nil }
            parsed = .pipeline(PipelineCompletion(
                executionID: execution, pipelineID: pipeline, application: origin["application"]?.stringValue,
                status: origin["status"]?.stringValue ?? "", chain: origin["chain"]?.intValue ?? 0, execution: origin["execution"] ?? .null))
        default:
            return nil
        }
        self.init(origin: parsed, payload: json["payload"] ?? .null, eventID: eventID, dedupeKey: key)
    }
}
