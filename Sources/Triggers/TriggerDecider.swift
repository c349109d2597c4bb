import EventLog
import Foundation
import Pipelines

/// What became of one trigger that listens to a delivery: it starts an execution, or why not.
public struct TriggerDecision: Sendable, Hashable {
    public enum Outcome: Sendable, Hashable {
        case start(executionID: String)
        /// `refused` when the trigger would have fired but the delivery's proof or the
        /// `runAsUser`'s permissions stopped it.
        case notMatched(reason: String, refused: Bool)
    }

    public let pipelineID: String
    public let application: String?
    public let pipelineName: String?
    public let triggerIndex: Int
    public let triggerType: String
    public var outcome: Outcome

    public var executionID: String? {
        if case .start(let id) = outcome { return id }
        return nil
    }

    public var json: JSONValue {
        var fields: [String: JSONValue] = [
            "pipelineId": .string(pipelineID), "application": application.map(JSONValue.string) ?? .null,
            "pipeline": pipelineName.map(JSONValue.string) ?? .null, "trigger": .number(Double(triggerIndex)), "type": .string(triggerType),
        ]
        switch outcome {
        case .start(let id): fields["executionId"] = .string(id)
        case .notMatched(let reason, let refused):
            fields["reason"] = .string(reason)
            if refused { fields["refused"] = true }
        }
        return .object(fields)
    }

    public init(pipelineID: String, application: String?, pipelineName: String?, triggerIndex: Int, triggerType: String, outcome: Outcome) {
        self.pipelineID = pipelineID
        self.application = application
        self.pipelineName = pipelineName
        self.triggerIndex = triggerIndex
        self.triggerType = triggerType
        self.outcome = outcome
    }

    public init?(json: JSONValue) {
        guard let pipelineID = json["pipelineId"]?.stringValue, let index = json["trigger"]?.intValue, let type = json["type"]?.stringValue else { return nil }
        self.pipelineID = pipelineID
        application = json["application"]?.stringValue
        pipelineName = json["pipeline"]?.stringValue
        triggerIndex = index
        triggerType = type
        if let id = json["executionId"]?.stringValue {
            outcome = .start(executionID: id)
        } else {
            outcome = .notMatched(reason: json["reason"]?.stringValue ?? "", refused: json["refused"]?.boolValue ?? false)
        }
    }
}

/// Decides, purely, which triggers of which pipelines a delivery fires (Echo's matching, with
/// the reason for every trigger that listens and does not fire). What needs the outside world —
/// the trigger's secret and its `runAsUser`'s permissions — is checked after, by the intake, on
/// the triggers this leaves standing.
public enum TriggerDecider {
    /// One trigger that listens to the delivery, and whether it matched so far.
    public struct Consideration: Sendable {
        public let pipeline: PipelineConfig
        public let index: Int
        public let trigger: [String: JSONValue]
        public var decision: TriggerDecision
    }

    /// Every trigger of `pipelines` that listens to the delivery's type and source (or master,
    /// or provider), each with `.start` when nothing in the delivery stops it, else the reason.
    public static func consider(_ delivery: Delivery, pipelines: [PipelineConfig]) -> [Consideration] {
        var considered: [Consideration] = []
        for pipeline in pipelines {
            guard let pipelineID = pipeline.id else { continue }
            for (index, value) in (pipeline.json["triggers"]?.arrayValue ?? []).enumerated() {
                guard let trigger = value.objectValue, let type = trigger["type"]?.stringValue, listens(trigger, type: type, to: delivery) else { continue }
                if case .cron(let firing) = delivery.origin, firing.pipelineID != pipelineID || firing.triggerIndex != index { continue }
                let reason = mismatch(trigger, pipeline: pipeline, delivery: delivery)
                let outcome: TriggerDecision.Outcome = reason.map { .notMatched(reason: $0, refused: false) }
                    ?? .start(executionID: delivery.executionID(pipelineID: pipelineID, trigger: index))
                considered.append(Consideration(
                    pipeline: pipeline, index: index, trigger: trigger,
                    decision: TriggerDecision(pipelineID: pipelineID, application: pipeline.application, pipelineName: pipeline.name,
                                              triggerIndex: index, triggerType: type, outcome: outcome)))
            }
        }
        return considered
    }

    /// Whether the trigger listens to this kind of delivery at all (others are not reported).
    static func listens(_ trigger: [String: JSONValue], type: String, to delivery: Delivery) -> Bool {
        switch delivery.origin {
        case .webhook(let kind, let source):
            return type == kind && trigger["source"]?.stringValue == source
        case .git(let event):
            let source = trigger["source"]?.stringValue
            return type == "git" && (source == event.provider || (event.provider == "bitbucket" && source == "stash"))
        case .build(let build):
            return Build.triggerTypes.contains(type) && trigger["master"]?.stringValue == build.master
        case .pipeline(let completion):
            return type == "pipeline" && trigger["pipeline"]?.stringValue == completion.pipelineID
        case .cron:
            return type == "cron"
        case .cdevent(let event):
            return type == "cdevents" && trigger["source"]?.stringValue == event.path
        case .pubsub(let message):
            return type == "pubsub" && (trigger["pubsubSystem"]?.stringValue ?? "kafka") == "kafka" && trigger["subscriptionName"]?.stringValue == message.topic
        }
    }

    /// Why the trigger does not fire for this delivery, or nil when it does (as far as the
    /// delivery and the pipeline tell).
    static func mismatch(_ trigger: [String: JSONValue], pipeline: PipelineConfig, delivery: Delivery) -> String? {
        if pipeline.disabled { return "the pipeline is disabled" }
        // As in Echo, a trigger fires only when `enabled` is true; absent is off.
        guard trigger["enabled"]?.boolValue == true else { return "the trigger is not enabled (enabled is not true)" }
        switch delivery.origin {
        case .webhook:
            break
        case .git(let event):
            if let project = trigger["project"]?.stringValue, !project.isEmpty, project != event.project {
                return "project is \(event.project), the trigger wants \(project)"
            }
            if let slug = trigger["slug"]?.stringValue, !slug.isEmpty, slug != event.slug {
                return "slug is \(event.slug), the trigger wants \(slug)"
            }
            if let branch = trigger["branch"]?.stringValue, !branch.isEmpty {
                guard let regex = try? Regex(branch) else { return "the trigger's branch \(branch) is not a valid regular expression" }
                if (try? regex.wholeMatch(in: event.branch)) == nil { return "branch \(event.branch) does not match \(branch) (the whole name must match)" }
            }
            let events = trigger["events"]?.arrayValue?.compactMap(\.stringValue) ?? []
            if !events.isEmpty, !events.contains(event.action), !events.contains(where: { event.action.hasPrefix($0 + ":") }) {
                return "event \(event.action) is not one of \(events.joined(separator: ", "))"
            }
        case .build(let build):
            if trigger["job"]?.stringValue != build.job { return "job is \(build.job), the trigger wants \(trigger["job"]?.stringValue ?? "none")" }
            if build.building { return "build \(build.job) #\(build.number) has not finished" }
            if build.result != "SUCCESS" { return "build \(build.job) #\(build.number) ended \(build.result), not SUCCESS" }
        case .pubsub:
            break
        case .cdevent(let event):
            if let constraints = trigger["attributeConstraints"]?.objectValue, !constraints.isEmpty,
               let reason = PayloadConstraints.mismatch(constraints, payload: event.json) {
                return "CloudEvent attribute: \(reason)"
            }
        case .cron(let firing):
            // The trigger may have changed since the clock read it.
            if trigger["cronExpression"]?.stringValue != firing.expression { return "the trigger's cronExpression changed to \(trigger["cronExpression"]?.stringValue ?? "none")" }
        case .pipeline(let completion):
            // Echo's default when none are listed: successful runs only.
            let wanted = trigger["status"]?.arrayValue?.compactMap { $0.stringValue?.lowercased() } ?? []
            let statuses = wanted.isEmpty ? ["successful"] : wanted
            if !statuses.contains(completion.triggerStatus) {
                return "execution \(completion.executionID) ended \(completion.status) (\(completion.triggerStatus)); the trigger wants \(statuses.joined(separator: ", "))"
            }
            if completion.chain >= PipelineCompletion.maximumChain {
                return "execution \(completion.executionID) ends a chain of \(completion.chain) pipeline triggers; at most \(PipelineCompletion.maximumChain) follow each other"
            }
        }
        if let constraints = trigger["payloadConstraints"]?.objectValue, !constraints.isEmpty {
            let subject: JSONValue
            if case .build(let build) = delivery.origin { subject = .object(build.properties) } else { subject = delivery.payload }
            if let reason = PayloadConstraints.mismatch(constraints, payload: subject) { return reason }
        }
        return nil
    }

    /// The execution's `trigger`, as Echo builds it: the trigger's configuration (never its
    /// secret) with what the delivery brought — `payload`, `parameters` and `eventId`; for git
    /// `hash`, `branch`, `project`, `slug` and `action`; for builds `buildNumber`, `buildInfo`
    /// and `properties` — and `user`, who it runs as.
    public static func executionTrigger(_ trigger: [String: JSONValue], delivery: Delivery, user: String, parameters: [String: JSONValue]) -> JSONValue {
        var fields = trigger
        fields.removeValue(forKey: "secret")
        fields["eventId"] = .string(delivery.eventID)
        fields["user"] = .string(user)
        fields["parameters"] = .object(parameters)
        fields["payload"] = delivery.payload
        switch delivery.origin {
        case .webhook:
            break
        case .git(let event):
            fields["hash"] = .string(event.hash)
            fields["branch"] = .string(event.branch)
            fields["project"] = .string(event.project)
            fields["slug"] = .string(event.slug)
            fields["action"] = .string(event.action)
        case .build(let build):
            fields["buildNumber"] = .number(Double(build.number))
            fields["buildInfo"] = build.info
            fields["properties"] = .object(build.properties)
            fields["job"] = .string(build.job)
        case .pubsub(let message):
            fields["message"] = ["topic": .string(message.topic), "partition": .number(Double(message.partition)),
                                 "offset": .number(Double(message.offset)), "key": message.key.map(JSONValue.string) ?? .null]
        case .cdevent(let event):
            fields["cloudEvent"] = event.json
        case .cron(let firing):
            fields["scheduledTime"] = .string(firing.scheduledText)
            fields["timeZone"] = .string(firing.timeZone)
            if firing.late { fields["late"] = true }
            fields.removeValue(forKey: "payload")
        case .pipeline(let completion):
            fields["parentExecution"] = completion.execution
            fields["parentPipelineId"] = .string(completion.pipelineID)
            fields["parentPipelineApplication"] = completion.application.map(JSONValue.string) ?? .null
            fields["parentStatus"] = .string(completion.status)
            fields["chain"] = .number(Double(completion.chain + 1))
            fields.removeValue(forKey: "payload")
        }
        return .object(fields)
    }

    /// The parameters a delivery gives: a webhook's `parameters`; a build's properties where
    /// the pipeline declares parameters of those names.
    public static func givenParameters(_ delivery: Delivery, pipeline: PipelineConfig) -> [String: JSONValue] {
        switch delivery.origin {
        case .webhook: return delivery.payload["parameters"]?.objectValue ?? [:]
        case .git, .pipeline, .cron: return [:]
        case .cdevent, .pubsub: return delivery.payload["parameters"]?.objectValue ?? [:]
        case .build(let build):
            let declared = Set((pipeline.json["parameterConfig"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue })
            return build.properties.filter { declared.contains($0.key) }
        }
    }
}
