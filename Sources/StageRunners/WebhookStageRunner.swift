import Access
import AsyncHTTPClient
import EventLog
import Foundation
import NIOCore
import NIOHTTP1
import Orchestration
import PipelineEngine
import Pipelines

/// `webhook`: calls `url` with `method`, `customHeaders` and `payload`; with `waitForCompletion`,
/// then checks a status endpoint after each back-off until `statusJsonPath` reads one of the
/// success, canceled or terminal statuses.
///
/// Every call is one run of the stage's work; between runs the stage waits on a durable timer,
/// and what a run learned (the status endpoint, retries so far, the last response) is recorded
/// in the stage's `webhook` output, so a restarted worker continues where the last one stopped.
/// Connection failures, 429, 5xx and `retryStatusCodes` are retried with a doubling back-off;
/// `failFastStatusCodes` and other 4xx fail the stage at once.
struct WebhookStageRunner: StageRunner {
    /// One client for the process. Failed connections are not retried inside the client: the
    /// stage retries them itself, with back-off on durable timers, and records each failure.
    static let sharedClient: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(30))
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.redirectConfiguration = .follow(max: 5, allowCycles: false)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    var client: HTTPClient = Self.sharedClient
    /// How long one request may take.
    var requestTimeout: Duration = .seconds(30)
    /// Response bodies larger than this fail the stage.
    var maxBodyBytes = 1 << 20
    /// Retries of a failing call when the stage has no `stageTimeoutMs` to bound them.
    var defaultMaxRetries = 10

    func run(_ run: StageRun) async throws -> StageOutcome {
        let settings: Settings
        do {
            settings = try Settings(run.stage)
        } catch {
            return StageOutcome(status: run.stage.failureStatus, outputs: ["error": .string("\(error)")])
        }
        var webhook = run.context["webhook"]?.objectValue ?? [:]
        // Created: the call succeeded and only its status remains to be watched.
        if webhook["statusCode"] == nil {
            return try await create(run, settings, &webhook)
        }
        return try await monitor(run, settings, &webhook)
    }

    private func create(_ run: StageRun, _ settings: Settings, _ webhook: inout [String: JSONValue]) async throws -> StageOutcome {
        let response: Response
        do {
            response = try await call(settings.method, settings.url, headers: settings.headers, body: settings.payload, work: run.work)
        } catch let failure as CallFailure {
            return retryOrFail(run, settings, &webhook, key: "retries", failure)
        }
        if let failure = settings.failure(for: response, of: settings.method, settings.url) {
            return retryOrFail(run, settings, &webhook, key: "retries", failure)
        }
        webhook["statusCode"] = .string(Self.reason(response.status))
        webhook["statusCodeValue"] = .number(Double(response.status.code))
        webhook["body"] = response.body
        webhook["error"] = nil
        guard settings.waitForCompletion else {
            return StageOutcome(status: .succeeded, outputs: ["webhook": .object(webhook)])
        }
        let endpoint: String
        switch settings.statusUrlResolution {
        case "locationHeader":
            guard let location = response.headers.first(name: "location"), let resolved = URL(string: location, relativeTo: settings.url)
            else { return Self.fail(run, webhook, "the webhook's response has no Location header to check its status at") }
            endpoint = resolved.absoluteString
        case "webhookResponse":
            guard let path = settings.statusUrlJsonPath else {
                return Self.fail(run, webhook, "statusUrlResolution webhookResponse needs statusUrlJsonPath")
            }
            guard let found = path.value(in: response.body)?.stringValue, let url = URL(string: found, relativeTo: settings.url) else {
                return Self.fail(run, webhook, "the webhook's response has no status URL at \(path)")
            }
            endpoint = url.absoluteString
        default:
            endpoint = settings.url.absoluteString
        }
        webhook["statusEndpoint"] = .string(endpoint)
        return .poll(after: settings.waitBeforeMonitor ?? settings.pollInterval, context: ["webhook": .object(webhook)])
    }

    private func monitor(_ run: StageRun, _ settings: Settings, _ webhook: inout [String: JSONValue]) async throws -> StageOutcome {
        guard let endpoint = webhook["statusEndpoint"]?.stringValue, let url = URL(string: endpoint) else {
            return Self.fail(run, webhook, "the webhook stage lost its status endpoint")
        }
        var monitor = webhook["monitor"]?.objectValue ?? [:]
        let response: Response
        do {
            response = try await call(.GET, url, headers: settings.headers, body: nil, work: run.work)
        } catch let failure as CallFailure {
            return retryOrFail(run, settings, &webhook, key: "monitorRetries", failure)
        }
        if let failure = settings.failure(for: response, of: .GET, url) {
            return retryOrFail(run, settings, &webhook, key: "monitorRetries", failure)
        }
        monitor["statusCodeValue"] = .number(Double(response.status.code))
        monitor["body"] = response.body
        if let path = settings.progressJsonPath, let progress = path.value(in: response.body) {
            monitor["progressMessage"] = .string(progress.stringValue ?? Self.text(progress))
        }
        webhook["monitor"] = .object(monitor)
        webhook["monitorRetries"] = nil
        webhook["error"] = nil
        guard let path = settings.statusJsonPath else {
            return Self.fail(run, webhook, "waitForCompletion needs statusJsonPath to read the status from")
        }
        let status = path.value(in: response.body).map { $0.stringValue ?? Self.text($0) }
        var outputs: [String: JSONValue] = ["webhook": .object(webhook)]
        if let message = monitor["progressMessage"] { outputs["progressMessage"] = message }
        switch status.map({ settings.classify($0) }) ?? nil {
        case .succeeded?:
            return StageOutcome(status: .succeeded, outputs: outputs)
        case .canceled?:
            return StageOutcome(status: .canceled, outputs: outputs)
        case .terminal?:
            outputs["error"] = .string("the webhook reported status '\(status ?? "")'")
            return StageOutcome(status: run.stage.failureStatus, outputs: outputs)
        default:
            return .poll(after: settings.pollInterval, context: outputs)
        }
    }

    /// Retries a retryable failure after a doubling back-off, or fails the stage.
    private func retryOrFail(
        _ run: StageRun, _ settings: Settings, _ webhook: inout [String: JSONValue], key: String, _ failure: CallFailure
    ) -> StageOutcome {
        webhook["error"] = .string(failure.message)
        if let status = failure.statusCode { webhook["lastStatusCodeValue"] = .number(Double(status)) }
        let retries = (webhook[key]?.intValue ?? 0) + 1
        let limit = run.stage.stageTimeoutMs == nil ? settings.maxRetries ?? defaultMaxRetries : settings.maxRetries ?? Int.max
        guard failure.retryable, retries <= limit else {
            let why = failure.retryable ? "\(failure.message) (gave up after \(retries - 1) retries)" : failure.message
            return Self.fail(run, webhook, why)
        }
        webhook[key] = .number(Double(retries))
        let delay = min(settings.pollInterval * (1 << min(retries - 1, 10)), .seconds(60))
        return .poll(after: delay, context: ["webhook": .object(webhook), "error": .string("\(failure.message); retry \(retries) of \(limit == Int.max ? "until the stage times out" : String(limit))")])
    }

    private static func fail(_ run: StageRun, _ webhook: [String: JSONValue], _ message: String) -> StageOutcome {
        var webhook = webhook
        webhook["error"] = .string(message)
        return StageOutcome(status: run.stage.failureStatus, outputs: ["webhook": .object(webhook), "error": .string(message)])
    }

    // MARK: - HTTP

    struct Response {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: JSONValue
    }

    struct CallFailure: Error {
        var message: String
        var retryable: Bool
        var statusCode: Int?
    }

    private func call(_ method: HTTPMethod, _ url: URL, headers: [(String, String)], body: JSONValue?, work: WorkHandle) async throws -> Response {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body, method != .GET, method != .HEAD {
            let text = try JSONText(encoding: body).text
            if !request.headers.contains(name: "content-type") { request.headers.add(name: "Content-Type", value: "application/json") }
            request.body = .bytes(ByteBuffer(string: text))
        }
        let (client, timeout, limit) = (self.client, requestTimeout, maxBodyBytes)
        let task = Task { () throws -> Response in
            let response = try await client.execute(request, timeout: .milliseconds(timeout.wholeMilliseconds))
            let bytes: ByteBuffer
            do {
                bytes = try await response.body.collect(upTo: limit)
            } catch is NIOTooManyBytesError {
                throw CallFailure(message: "the response of \(method) \(url.absoluteString) is larger than \(limit) bytes", retryable: false, statusCode: nil)
            }
            let text = String(buffer: bytes)
            let body: JSONValue = (try? JSONText(text).decode(JSONValue.self)) ?? (text.isEmpty ? .null : .string(text))
            return Response(status: response.status, headers: response.headers, body: body)
        }
        work.onCancel { task.cancel() }
        do {
            return try await task.value
        } catch let failure as CallFailure {
            throw failure
        } catch {
            if work.isCanceled { throw CallFailure(message: "canceled", retryable: false, statusCode: nil) }
            throw CallFailure(message: "\(method) \(url.absoluteString) failed: \(Self.describe(error))", retryable: true, statusCode: nil)
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            if error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout { return "no answer in time" }
            if error == .remoteConnectionClosed { return "the server closed the connection" }
        }
        let text = "\(error)"
        return text.count > 300 ? String(text.prefix(300)) + "…" : text
    }

    static func reason(_ status: HTTPResponseStatus) -> String {
        // Spinnaker reports the status as Spring's enum name, e.g. OK, CREATED, ACCEPTED.
        status.reasonPhrase.uppercased().replacingOccurrences(of: " ", with: "_")
    }

    static func text(_ value: JSONValue) -> String {
        (try? JSONText(encoding: value).text) ?? ""
    }

    // MARK: - Settings

    /// The stage's fields, checked.
    struct Settings {
        let url: URL
        let method: HTTPMethod
        let headers: [(String, String)]
        let payload: JSONValue?
        let waitForCompletion: Bool
        let statusUrlResolution: String
        let statusUrlJsonPath: JSONPath?
        let statusJsonPath: JSONPath?
        let progressJsonPath: JSONPath?
        let successStatuses: Set<String>
        let canceledStatuses: Set<String>
        let terminalStatuses: Set<String>
        let retryStatusCodes: Set<Int>
        let failFastStatusCodes: Set<Int>
        let pollInterval: Duration
        let waitBeforeMonitor: Duration?
        let maxRetries: Int?

        init(_ stage: StageConfig) throws {
            let json = stage.json
            guard let text = json["url"]?.stringValue, let url = URL(string: text), let scheme = url.scheme?.lowercased(),
                  scheme == "http" || scheme == "https", url.host != nil
            else { throw StageSettingsError("webhook url must be an http or https URL, got \(json["url"].map(WebhookStageRunner.text) ?? "nothing")") }
            self.url = url
            let methodName = (json["method"]?.stringValue ?? "POST").uppercased()
            guard ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(methodName) else {
                throw StageSettingsError("webhook method '\(methodName)' is not one of GET, POST, PUT, PATCH, DELETE, HEAD")
            }
            method = HTTPMethod(rawValue: methodName)
            var headers: [(String, String)] = []
            for (name, value) in (json["customHeaders"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
                switch value {
                case .string(let text): headers.append((name, text))
                case .array(let values): headers += values.compactMap(\.stringValue).map { (name, $0) }
                default: throw StageSettingsError("customHeaders.\(name) must be a string or a list of strings")
                }
            }
            self.headers = headers
            payload = json["payload"]
            waitForCompletion = json["waitForCompletion"]?.boolValue ?? false
            statusUrlResolution = json["statusUrlResolution"]?.stringValue ?? "getMethod"
            guard ["getMethod", "locationHeader", "webhookResponse"].contains(statusUrlResolution) else {
                throw StageSettingsError("statusUrlResolution must be getMethod, locationHeader or webhookResponse")
            }
            func path(_ name: String) throws -> JSONPath? {
                guard let text = json[name]?.stringValue, !text.isEmpty else { return nil }
                return try JSONPath(text)
            }
            statusUrlJsonPath = try path("statusUrlJsonPath")
            statusJsonPath = try path("statusJsonPath")
            progressJsonPath = try path("progressJsonPath")
            func statuses(_ name: String) -> Set<String> {
                let list: [String] = switch json[name] {
                case .string(let text)?: text.split(separator: ",").map(String.init)
                case .array(let values)?: values.compactMap(\.stringValue)
                default: []
                }
                return Set(list.map { $0.trimmingCharacters(in: .whitespaces).uppercased() }.filter { !$0.isEmpty })
            }
            successStatuses = statuses("successStatuses")
            canceledStatuses = statuses("canceledStatuses")
            terminalStatuses = statuses("terminalStatuses")
            if waitForCompletion && successStatuses.isEmpty {
                throw StageSettingsError("waitForCompletion needs successStatuses (comma-separated) to know when the work is done")
            }
            func codes(_ name: String) -> Set<Int> { Set(json[name]?.arrayValue?.compactMap(\.intValue) ?? []) }
            retryStatusCodes = codes("retryStatusCodes")
            failFastStatusCodes = codes("failFastStatusCodes")
            pollInterval = .milliseconds(max(100, stage.json["backoffPeriodMs"]?.intValue ?? 1000))
            waitBeforeMonitor = json["waitBeforeMonitor"]?.doubleValue.map { .milliseconds(Int64(max(0, $0) * 1000)) }
            maxRetries = json["maxRetries"]?.intValue.map { max(0, $0) }
        }

        /// What a response means when it is not a success.
        func failure(for response: Response, of method: HTTPMethod, _ url: URL) -> CallFailure? {
            let code = Int(response.status.code)
            let summary = "\(method) \(url.absoluteString) answered \(code)"
            if failFastStatusCodes.contains(code) { return CallFailure(message: summary + " (failFastStatusCodes)", retryable: false, statusCode: code) }
            if retryStatusCodes.contains(code) || code == 429 || code >= 500 { return CallFailure(message: summary, retryable: true, statusCode: code) }
            if code >= 400 { return CallFailure(message: summary, retryable: false, statusCode: code) }
            return nil
        }

        func classify(_ status: String) -> ExecutionStatus? {
            let status = status.trimmingCharacters(in: .whitespaces).uppercased()
            if successStatuses.contains(status) { return .succeeded }
            if canceledStatuses.contains(status) { return .canceled }
            if terminalStatuses.contains(status) { return .terminal }
            return nil
        }
    }
}

/// A stage whose fields cannot work; it fails with this message.
struct StageSettingsError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
