import EventLog
import Foundation

/// A delivery that cannot be taken, in words (the API answers 400 with it).
public struct DeliveryError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Reads what senders post: any JSON for webhooks, each git provider's real payloads and
/// headers, the Jenkins Notification plugin's JSON and Topsail's generic build JSON.
/// `headers` are keyed by lowercased name.
public enum DeliveryParser {
    /// Names in paths: what a trigger's `source`, a CI `master` or a git provider may be.
    static func checkName(_ value: String, _ what: String) throws(DeliveryError) {
        guard !value.isEmpty, value.count <= 200,
              value.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value != 0x7F }) else {
            throw DeliveryError("\(what) must be 1 to 200 printable ASCII characters")
        }
    }

    static func json(_ body: [UInt8]) throws(DeliveryError) -> JSONValue {
        guard !body.isEmpty else { return .object([:]) }
        do {
            return try JSONText(String(decoding: body, as: UTF8.self)).decode(JSONValue.self)
        } catch {
            throw DeliveryError("the body is not valid JSON: \(error)")
        }
    }

    /// A sender-chosen key (`Idempotency-Key`) when usable, else nil.
    static func idempotencyKey(_ headers: [String: String]) -> String? {
        guard let key = headers["idempotency-key"]?.trimmingCharacters(in: .whitespaces), !key.isEmpty, key.count <= 200 else { return nil }
        return key
    }

    /// `POST /webhooks/{type}/{source}`: any JSON object; its `parameters` (an object) become the
    /// pipeline's parameters.
    public static func webhook(type: String, source: String, body: [UInt8], headers: [String: String], eventID: String) throws(DeliveryError) -> Delivery {
        try checkName(type, "the trigger type")
        try checkName(source, "the source")
        let payload = try json(body)
        guard payload.objectValue != nil else { throw DeliveryError("the body must be a JSON object, not \(payload.typeName)") }
        if let parameters = payload["parameters"], parameters != .null, parameters.objectValue == nil {
            throw DeliveryError("parameters must be an object of name → value, not \(parameters.typeName)")
        }
        let key = idempotencyKey(headers).map { "webhook/\(type)/\(source)/\($0)" } ?? "event/\(eventID)"
        return Delivery(origin: .webhook(type: type, source: source), payload: payload, eventID: eventID, dedupeKey: key)
    }

    /// `POST /webhooks/git/{provider}`. Nil for a delivery that is not an event to act on
    /// (GitHub's `ping`).
    public static func git(provider: String, body: [UInt8], headers: [String: String], eventID: String) throws(DeliveryError) -> Delivery? {
        let payload = try json(body)
        guard payload.objectValue != nil else { throw DeliveryError("the body must be a JSON object, not \(payload.typeName)") }
        let event: GitEvent
        let delivery: String?
        switch provider {
        case "github":
            let kind = headers["x-github-event"] ?? "push"
            if kind == "ping" { return nil }
            guard let repository = payload["repository"] else { throw DeliveryError("a GitHub event needs repository") }
            let project = repository["owner"]?["login"]?.stringValue ?? repository["owner"]?["name"]?.stringValue
            guard let project, let slug = repository["name"]?.stringValue else {
                throw DeliveryError("a GitHub event needs repository.owner.login (or .name) and repository.name")
            }
            var branch = payload["ref"]?.stringValue ?? payload["pull_request"]?["head"]?["ref"]?.stringValue ?? ""
            branch = strip(branch)
            let hash = payload["after"]?.stringValue ?? payload["pull_request"]?["head"]?["sha"]?.stringValue ?? ""
            let action = payload["action"]?.stringValue.map { "\(kind):\($0)" } ?? kind
            event = GitEvent(provider: provider, project: project, slug: slug, branch: branch, hash: hash, action: action)
            delivery = headers["x-github-delivery"]
        case "gitlab":
            guard let project = payload["project"] else { throw DeliveryError("a GitLab event needs project") }
            guard let namespace = project["namespace"]?.stringValue, let name = project["path"]?.stringValue ?? project["name"]?.stringValue else {
                throw DeliveryError("a GitLab event needs project.namespace and project.path (or .name)")
            }
            let kind = payload["object_kind"]?.stringValue ?? "push"
            event = GitEvent(provider: provider, project: namespace, slug: name, branch: strip(payload["ref"]?.stringValue ?? ""),
                             hash: payload["checkout_sha"]?.stringValue ?? payload["after"]?.stringValue ?? "", action: kind)
            delivery = headers["x-gitlab-event-uuid"]
        case "bitbucket", "stash":
            guard let fullName = payload["repository"]?["full_name"]?.stringValue ?? payload["repository"]?["fullName"]?.stringValue,
                  let slash = fullName.firstIndex(of: "/") else {
                throw DeliveryError("a Bitbucket event needs repository.full_name (owner/slug)")
            }
            let change = payload["push"]?["changes"]?.arrayValue?.first?["new"]
            event = GitEvent(provider: provider, project: String(fullName[..<slash]), slug: String(fullName[fullName.index(after: slash)...]),
                             branch: change?["name"]?.stringValue ?? "", hash: change?["target"]?["hash"]?.stringValue ?? "",
                             action: headers["x-event-key"] ?? "repo:push")
            delivery = headers["x-request-uuid"] ?? headers["x-hook-uuid"]
        default:
            throw DeliveryError("unknown git provider \(provider): use github, gitlab, bitbucket or stash")
        }
        let key = (delivery.flatMap { $0.isEmpty || $0.count > 200 ? nil : $0 }).map { "git/\(provider)/\($0)" }
            ?? idempotencyKey(headers).map { "git/\(provider)/\($0)" } ?? "event/\(eventID)"
        return Delivery(origin: .git(event), payload: payload, eventID: eventID, dedupeKey: key)
    }

    static func strip(_ ref: String) -> String {
        for prefix in ["refs/heads/", "refs/tags/"] where ref.hasPrefix(prefix) { return String(ref.dropFirst(prefix.count)) }
        return ref
    }

    /// `POST /webhooks/cdevents/{source}`: a CDEvent in CloudEvents' HTTP binary mode (`ce-id`,
    /// `ce-type`, `ce-source` headers; the event as the body) or structured mode (content type
    /// `application/cloudevents+json`; the attributes and `data` in the body). The CloudEvent's
    /// source and id make it one delivery however often it is sent.
    public static func cdevent(path: String, body: [UInt8], headers: [String: String], eventID: String) throws(DeliveryError) -> Delivery {
        try checkName(path, "the source")
        let json = try json(body)
        let attributes: CloudEventAttributes
        let data: JSONValue
        if headers["content-type"]?.lowercased().hasPrefix("application/cloudevents+json") == true {
            guard json.objectValue != nil else { throw DeliveryError("a structured CloudEvent must be a JSON object") }
            guard let id = json["id"]?.stringValue, let type = json["type"]?.stringValue, let source = json["source"]?.stringValue,
                  !id.isEmpty, !type.isEmpty, !source.isEmpty else {
                throw DeliveryError("a structured CloudEvent needs id, type and source")
            }
            attributes = CloudEventAttributes(path: path, id: id, type: type, source: source, subject: json["subject"]?.stringValue)
            data = json["data"] ?? .object([:])
        } else {
            guard let id = headers["ce-id"], let type = headers["ce-type"], let source = headers["ce-source"], !id.isEmpty, !type.isEmpty, !source.isEmpty else {
                throw DeliveryError("a CloudEvent in binary mode needs the headers ce-id, ce-type and ce-source (or send application/cloudevents+json)")
            }
            attributes = CloudEventAttributes(path: path, id: id, type: type, source: source, subject: headers["ce-subject"])
            data = json
        }
        guard data.objectValue != nil else { throw DeliveryError("the CDEvent must be a JSON object, not \(data.typeName)") }
        guard attributes.id.count <= 500, attributes.source.count <= 1000 else { throw DeliveryError("ce-id or ce-source is too long (500 and 1,000 characters at most)") }
        return Delivery(origin: .cdevent(attributes), payload: data, eventID: eventID,
                        dedupeKey: "cdevents/\(path)/\(attributes.source)/\(attributes.id)")
    }

    /// `POST /ci/builds/{master}`: the Jenkins Notification plugin's JSON (`{name, url, build:
    /// {number, phase, status, full_url, scm, parameters, artifacts}}`) or the generic build JSON
    /// (`{job, number, result, building, url, timestamp, duration, artifacts, scm, properties}`).
    public static func build(master: String, body: [UInt8], headers: [String: String], eventID: String) throws(DeliveryError) -> Delivery {
        try checkName(master, "the CI master")
        let payload = try json(body)
        guard payload.objectValue != nil else { throw DeliveryError("the body must be a JSON object, not \(payload.typeName)") }
        let build: Build
        if let jenkins = payload["build"], jenkins.objectValue != nil {
            guard let job = payload["name"]?.stringValue, !job.isEmpty else { throw DeliveryError("a Jenkins notification needs name (the job)") }
            guard let number = jenkins["number"]?.intValue else { throw DeliveryError("a Jenkins notification needs build.number") }
            let phase = jenkins["phase"]?.stringValue?.uppercased() ?? "COMPLETED"
            let building = !["COMPLETED", "FINALIZED", "FINALISED"].contains(phase)
            let result = jenkins["status"]?.stringValue?.uppercased() ?? (building ? "BUILDING" : "NOT_BUILT")
            var scm: [JSONValue] = []
            if let given = jenkins["scm"], given.objectValue != nil {
                scm.append(["name": given["url"] ?? .null, "branch": given["branch"] ?? .null, "sha1": given["commit"] ?? .null])
            }
            var artifacts: [JSONValue] = []
            for (name, value) in (jenkins["artifacts"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
                artifacts.append(["fileName": .string(name), "displayPath": .string(name), "relativePath": .string(name),
                                  "url": value["archive"] ?? .null])
            }
            let info: JSONValue = [
                "name": .string(job), "number": .number(Double(number)), "url": jenkins["full_url"] ?? jenkins["url"] ?? .null,
                "result": .string(result), "building": .bool(building), "timestamp": jenkins["timestamp"] ?? .null,
                "duration": jenkins["duration"] ?? .null, "artifacts": .array(artifacts), "scm": .array(scm),
            ]
            let properties = payload["properties"]?.objectValue ?? jenkins["parameters"]?.objectValue ?? [:]
            build = Build(master: master, job: job, number: number, building: building, result: result, info: info, properties: properties)
        } else {
            guard let job = payload["job"]?.stringValue ?? payload["name"]?.stringValue, !job.isEmpty else {
                throw DeliveryError("a build needs job (the job's name) and number; see docs/triggers.md for the build JSON")
            }
            guard let number = payload["number"]?.intValue else { throw DeliveryError("a build needs number (an integer)") }
            guard let result = payload["result"]?.stringValue?.uppercased() else {
                throw DeliveryError("a build needs result: SUCCESS, UNSTABLE, BUILDING, ABORTED, FAILURE or NOT_BUILT")
            }
            let known = ["SUCCESS", "UNSTABLE", "BUILDING", "ABORTED", "FAILURE", "NOT_BUILT"]
            guard known.contains(result) else { throw DeliveryError("result \(result) is not one of \(known.joined(separator: ", "))") }
            if let properties = payload["properties"], properties != .null, properties.objectValue == nil {
                throw DeliveryError("properties must be an object, not \(properties.typeName)")
            }
            let building = payload["building"]?.boolValue ?? (result == "BUILDING")
            let info: JSONValue = [
                "name": .string(job), "number": .number(Double(number)), "url": payload["url"] ?? .null, "result": .string(result),
                "building": .bool(building), "timestamp": payload["timestamp"] ?? .null, "duration": payload["duration"] ?? .null,
                "artifacts": payload["artifacts"] ?? .array([]), "testResults": payload["testResults"] ?? .array([]), "scm": payload["scm"] ?? .array([]),
            ]
            build = Build(master: master, job: job, number: number, building: building, result: result, info: info,
                          properties: payload["properties"]?.objectValue ?? [:])
        }
        // A finished build is one receipt however often it is told (Jenkins sends COMPLETED and
        // FINALIZED); the notifications before it each are their own.
        let key = build.building ? "build/\(master)/\(build.job)/\(build.number)/\(eventID)" : "build/\(master)/\(build.job)/\(build.number)"
        return Delivery(origin: .build(build), payload: payload, eventID: eventID, dedupeKey: key)
    }
}
