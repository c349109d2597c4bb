import AsyncHTTPClient
import EventLog
import Foundation
import NIOCore
import NIOHTTP1

/// Why a send failed, and whether trying again may help.
public struct SendFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// False for what cannot pass (a 4xx, an address that is not a URL, a channel not configured).
    public let retriable: Bool
}

/// Where notifications go: Slack, Microsoft Teams and Google Chat incoming webhooks, Echo's
/// webhook event JSON, CDEvents to an HTTP sink, GitHub commit statuses, and mail (SMTP). Every
/// HTTP request carries `Idempotency-Key` (the notification's key); a mail, `Message-ID` made of
/// it, so a notification sent again after a crash is the same message to whoever receives it.
public struct NotificationChannels: Sendable {
    public struct Configuration: Sendable {
        /// GitHub's API, for `githubStatus` (GitHub Enterprise: https://host/api/v3).
        public var githubAPI: String = "https://api.github.com"
        public var githubToken: String?
        public var smtp: SMTPConfiguration?
        /// Where a notification's execution can be seen (its API or UI), in links.
        public var publicURL: String?
        public var requestTimeout: Duration = .seconds(10)

        public init() {}
    }

    public static let types = ["slack", "microsoftteams", "googlechat", "webhook", "cdevents", "githubStatus", "email"]

    let client: HTTPClient
    let configuration: Configuration

    public init(client: HTTPClient, configuration: Configuration) {
        self.client = client
        self.configuration = configuration
    }

    /// Sends one notification once (the caller retries). `execution` is its execution's view.
    public func send(_ notification: PlannedNotification, execution: JSONValue, cdevent: CDEvents.Event?) async throws(SendFailure) {
        let link = configuration.publicURL.map { "\($0)/pipelines/\(notification.executionID)" }
        let text = link.map { "\(notification.text)\n\($0)" } ?? notification.text
        switch notification.type {
        case "slack":
            try await post(notification, [
                "text": .string(notification.subject),
                "blocks": [["type": "section", "text": ["type": "mrkdwn", "text": .string(text)]]],
            ])
        case "microsoftteams":
            try await post(notification, [
                "@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": .string(notification.subject),
                "title": .string(notification.subject), "text": .string(text), "themeColor": .string(Self.color(notification.when)),
            ])
        case "googlechat":
            try await post(notification, ["text": .string(text)])
        case "webhook":
            // Echo's event JSON, as its rest.endpoints send it.
            let type = notification.when.hasPrefix("pipeline.") ? "orca:pipeline:\(notification.when.dropFirst("pipeline.".count))"
                : notification.when.hasPrefix("stage.") ? "orca:stage:\(notification.when.dropFirst("stage.".count))" : "orca:stage:\(notification.when)"
            try await post(notification, [
                "details": ["source": "topsail", "type": .string(type), "created": .string(String(Int64(Date().timeIntervalSince1970 * 1000))),
                            "application": notification.application.map(JSONValue.string) ?? .null],
                "content": ["execution": execution, "executionId": .string(notification.executionID),
                            "stageId": notification.stage.map(JSONValue.string) ?? .null, "message": .string(text)],
                "eventId": .string(notification.key),
            ])
        case "cdevents":
            guard let cdevent else { throw SendFailure(description: "\(notification.when) has no CDEvent", retriable: false) }
            var headers = HTTPHeaders()
            headers.add(name: "ce-specversion", value: "1.0")
            headers.add(name: "ce-id", value: cdevent.id)
            headers.add(name: "ce-source", value: cdevent.source)
            headers.add(name: "ce-type", value: cdevent.type)
            headers.add(name: "ce-subject", value: cdevent.subject)
            headers.add(name: "ce-time", value: cdevent.time.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
            try await post(notification, cdevent.data, headers: headers)
        case "githubStatus":
            try await githubStatus(notification, execution: execution, link: link)
        case "email":
            guard let smtp = configuration.smtp else {
                throw SendFailure(description: "no mail server is configured: start the notifier with --smtp-url (or TOPSAIL_SMTP_URL)", retriable: false)
            }
            try await SMTPClient(configuration: smtp).send(Mail(
                from: smtp.from, to: [notification.address] + (notification.entry["cc"]?.stringValue.map { [$0] } ?? []),
                subject: notification.subject, body: text, messageID: "<\(notification.key)@topsail>"))
        default:
            throw SendFailure(description: "unknown notification type \(notification.type): use one of \(Self.types.joined(separator: ", "))", retriable: false)
        }
    }

    static func color(_ when: String) -> String {
        when.hasSuffix("failed") || when.hasSuffix("Stop") ? "D63232" : when.hasSuffix("complete") || when.hasSuffix("Continue") ? "2EB886" : "3B73B9"
    }

    private func post(_ notification: PlannedNotification, _ body: JSONValue, headers: HTTPHeaders = HTTPHeaders()) async throws(SendFailure) {
        try await post(url: notification.address, key: notification.key, body: body, headers: headers)
    }

    func post(url: String, key: String, body: JSONValue, headers extra: HTTPHeaders = HTTPHeaders(), authorization: String? = nil) async throws(SendFailure) {
        guard let parsed = URL(string: url), let scheme = parsed.scheme, ["http", "https"].contains(scheme), parsed.host != nil else {
            throw SendFailure(description: "the address is not an http(s) URL", retriable: false)
        }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "topsail-notifier")
        request.headers.add(name: "Idempotency-Key", value: key)
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        request.headers.add(contentsOf: extra)
        do {
            request.body = .bytes(ByteBuffer(string: try JSONText(encoding: body).text))
            let response = try await client.execute(request, timeout: .seconds(Int64(configuration.requestTimeout.components.seconds)))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let status = Int(response.status.code)
            guard (200..<300).contains(status) else {
                // A receiver that is overloaded or failing may take it later; one that refuses it will not.
                throw SendFailure(description: "the receiver answered HTTP \(status)", retriable: status >= 500 || status == 408 || status == 429)
            }
        } catch let failure as SendFailure {
            throw failure
        } catch {
            // The URL may hold a credential (a Slack webhook's path): only its host is named.
            throw SendFailure(description: "sending to \(parsed.host ?? "the receiver") failed: \(error)", retriable: true)
        }
    }

    /// A commit status on the commit the execution was triggered by (a git trigger's `hash` in
    /// `project/slug`, or the entry's `repo`).
    private func githubStatus(_ notification: PlannedNotification, execution: JSONValue, link: String?) async throws(SendFailure) {
        guard let token = configuration.githubToken else {
            throw SendFailure(description: "no GitHub token is configured: start the notifier with --github-token-file (or TOPSAIL_GITHUB_TOKEN)", retriable: false)
        }
        let trigger = execution["trigger"] ?? .null
        let repo = notification.entry["repo"]?.stringValue
            ?? (trigger["project"]?.stringValue).flatMap { project in trigger["slug"]?.stringValue.map { "\(project)/\($0)" } }
        guard let repo, let sha = trigger["hash"]?.stringValue, !sha.isEmpty else {
            throw SendFailure(description: "githubStatus needs an execution triggered by a git push (its project, slug and hash) or the entry's repo", retriable: false)
        }
        let state: String
        switch notification.when {
        case "pipeline.complete", "stage.complete", "manualJudgmentContinue": state = "success"
        case "pipeline.failed", "stage.failed", "manualJudgmentStop": state = "failure"
        default: state = "pending"
        }
        var body: [String: JSONValue] = [
            "state": .string(state), "description": .string(String(notification.subject.prefix(140))),
            "context": .string("topsail/\(notification.application ?? "-")/\(notification.pipeline ?? "-")" + (notification.stage.map { "/\($0)" } ?? "")),
        ]
        if let link { body["target_url"] = .string(link) }
        try await post(url: "\(configuration.githubAPI)/repos/\(repo)/statuses/\(sha)", key: notification.key, body: .object(body),
                       authorization: "Bearer \(token)")
    }
}
