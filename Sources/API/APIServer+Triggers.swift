import Access
import EventLog
import Foundation
import Hummingbird
import NIOCore
import Triggers

/// Trigger deliveries (Echo's `/webhooks/…` and Igor's part): webhooks, git pushes and CI builds.
/// Each is recorded as a receipt before anything starts (``TriggerIntake``); the answer is Echo's
/// `{"eventProcessed", "eventId"}` plus which executions started and, for the applications the
/// caller may READ, which listening triggers did not fire and why.
extension APIServer {
    func addTriggerRoutes(to routes: Routes) {
        routes.on(.post, "/webhooks/git/:provider", .trigger) { request, context in
            let provider = try context.parameters.require("provider")
            return try await deliver(request, context) { body, headers, eventID in
                try DeliveryParser.git(provider: provider, body: body, headers: headers, eventID: eventID)
            }
        }
        routes.on(.post, "/webhooks/cdevents/:source", .trigger) { request, context in
            let source = try context.parameters.require("source")
            return try await deliver(request, context) { body, headers, eventID in
                try DeliveryParser.cdevent(path: source, body: body, headers: headers, eventID: eventID)
            }
        }
        routes.on(.post, "/webhooks/:type/:source", .trigger) { request, context in
            let (type, source) = (try context.parameters.require("type"), try context.parameters.require("source"))
            return try await deliver(request, context) { body, headers, eventID in
                try DeliveryParser.webhook(type: type, source: source, body: body, headers: headers, eventID: eventID)
            }
        }
        routes.on(.post, "/ci/builds/:master", .trigger) { request, context in
            let master = try context.parameters.require("master")
            return try await deliver(request, context) { body, headers, eventID in
                try DeliveryParser.build(master: master, body: body, headers: headers, eventID: eventID)
            }
        }
    }

    /// Reads the raw body (the signatures are over its bytes), parses it, and hands the delivery
    /// to the intake. `parse` answers nil for a delivery that is not an event (GitHub's ping).
    private func deliver(
        _ request: Request, _ context: APIContext, parse: ([UInt8], [String: String], String) throws -> Delivery?
    ) async throws -> Response {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: configuration.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "payload_too_large", "the request body is larger than \(configuration.maxBodyBytes) bytes")
        }
        let body = Array(buffer: buffer)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let eventID = UUID().uuidString.lowercased()
        let parsed: Delivery?
        do {
            parsed = try parse(body, headers, eventID)
        } catch let error as DeliveryError {
            throw APIError(.badRequest, "bad_delivery", error.description)
        }
        guard let delivery = parsed else {
            return try Self.json(["eventProcessed": false, "eventId": .string(eventID), "message": "not an event Topsail acts on (a ping)"] as JSONValue)
        }
        if let path = Self.nulCharacter(in: delivery.payload) {
            throw APIError(.badRequest, "bad_delivery", "text may not contain the NUL character (\\u0000), found at \(path)")
        }
        let receipt = try await intake.receive(delivery, body: body, proof: Signatures.Proof(headers: headers), headers: headers, sender: context.caller?.user)
        return try await answer(receipt, context)
    }

    /// The answer: what started (for everyone: a sender should know its delivery did something)
    /// and why the rest did not (only for applications the caller may READ: pipeline names and
    /// trigger settings are not for anonymous senders).
    private func answer(_ receipt: Receipt, _ context: APIContext) async throws -> Response {
        var readable: [String: Bool] = [:]
        func mayRead(_ application: String?) async throws -> Bool {
            guard context.caller != nil else { return false }
            let key = application ?? ""
            if readable[key] == nil { readable[key] = try await may(context, .read, application: application) }
            return readable[key] ?? false
        }
        var executions: [JSONValue] = []
        var notMatched: [JSONValue] = []
        var hidden = 0
        for decision in receipt.decisions {
            let visible = try await mayRead(decision.application)
            if let id = decision.executionID {
                var entry: [String: JSONValue] = ["id": .string(id), "ref": .string("/pipelines/\(id)")]
                if visible { entry.merge(decision.json.objectValue ?? [:]) { mine, _ in mine } }
                executions.append(.object(entry))
            } else if visible {
                notMatched.append(decision.json)
            } else {
                hidden += 1
            }
        }
        var fields: [String: JSONValue] = [
            "eventProcessed": true, "eventId": .string(receipt.delivery.eventID), "duplicate": .bool(receipt.duplicate),
            "executions": .array(executions), "notMatched": .array(notMatched),
        ]
        if hidden > 0 {
            fields["notMatchedHidden"] = .number(Double(hidden))
            fields["hint"] = "send an API token with READ on the applications to see which triggers did not fire and why"
        }
        if receipt.started.isEmpty, receipt.refusedForProof {
            // A secret was set and the delivery did not prove it holds it; the receipt records the refusal.
            fields["error"] = "unauthenticated"
            fields["status"] = 401
            fields["message"] = "the delivery's signature does not prove the trigger's secret: nothing started"
            return try Self.json(JSONValue.object(fields), status: .unauthorized)
        }
        return try Self.json(JSONValue.object(fields), status: .ok)
    }
}
