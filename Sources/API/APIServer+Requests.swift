import EventLog
import Foundation
import Hummingbird
import NIOCore
import PipelineEngine
import ReadModels
import Pipelines

/// Reading requests: JSON bodies within the limit, and typed query parameters with clear refusals.
extension APIServer {
    /// The request body as JSON, within the size limit.
    func body(_ request: Request, allowEmpty: Bool = false) async throws -> JSONValue {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: configuration.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "payload_too_large", "the request body is larger than \(configuration.maxBodyBytes) bytes")
        }
        if buffer.readableBytes == 0 && allowEmpty { return .object([:]) }
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: buffer)), value.objectValue != nil else {
            throw APIError.badRequest("the request body must be a JSON object")
        }
        if let path = Self.nulCharacter(in: value) {
            throw APIError(.badRequest, "bad_request", "text may not contain the NUL character (\\u0000)",
                           problems: [.init(path: path, stage: nil, message: "contains \\u0000")])
        }
        return value
    }

    /// A pipeline's body: JSON, or YAML when the request says so (`Content-Type:
    /// application/yaml`, as the editor's YAML view and `topsail apply` write it).
    func documentBody(_ request: Request) async throws -> JSONValue {
        guard request.headers[.contentType]?.lowercased().contains("yaml") == true else { return try await body(request) }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: configuration.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "payload_too_large", "the request body is larger than \(configuration.maxBodyBytes) bytes")
        }
        let documents: [JSONValue]
        do {
            documents = try YAMLDocuments.documents(String(buffer: buffer))
        } catch {
            throw APIError.badRequest("the request body is \(error)")
        }
        guard documents.count == 1, let value = documents.first, value.objectValue != nil else {
            throw APIError.badRequest("the request body must be one YAML document holding a mapping (a pipeline)")
        }
        if let path = Self.nulCharacter(in: value) {
            throw APIError(.badRequest, "bad_request", "text may not contain the NUL character (\\u0000)",
                           problems: [.init(path: path, stage: nil, message: "contains \\u0000")])
        }
        return value
    }

    /// Whether the client asked for YAML (`Accept: application/yaml`).
    static func wantsYAML(_ request: Request) -> Bool {
        request.headers[.accept]?.lowercased().contains("yaml") == true
    }

    /// Where a string or a key holds U+0000, which PostgreSQL's jsonb cannot store; nil when none does.
    static func nulCharacter(in value: JSONValue, path: String = "$") -> String? {
        switch value {
        case .string(let text): return text.unicodeScalars.contains("\0") ? path : nil
        case .array(let items):
            for (index, item) in items.enumerated() {
                if let found = nulCharacter(in: item, path: "\(path)[\(index)]") { return found }
            }
            return nil
        case .object(let fields):
            for (key, item) in fields {
                if key.unicodeScalars.contains("\0") { return path }
                if let found = nulCharacter(in: item, path: path == "$" ? key : "\(path).\(key)") { return found }
            }
            return nil
        default: return nil
        }
    }

    /// An optional query parameter that is `true` or `false`.
    static func boolean(_ text: Substring?, _ name: String) throws -> Bool? {
        switch text {
        case nil: return nil
        case "true": return true
        case "false": return false
        case let text?: throw APIError.badRequest("\(name) must be true or false, got '\(text)'")
        }
    }

    /// An optional whole-number query parameter within `range`.
    static func integer(_ text: Substring?, _ name: String, in range: ClosedRange<Int64>) throws -> Int64? {
        guard let text else { return nil }
        guard let value = Int64(text), range.contains(value) else {
            throw APIError.badRequest("\(name) must be a whole number in \(range.lowerBound)…\(range.upperBound), got '\(text)'")
        }
        return value
    }

    static func filter(_ request: Request) throws -> ExecutionReadModel.Filter {
        let query = request.uri.queryParameters
        var filter = ExecutionReadModel.Filter()
        if let limit = query["limit"] {
            guard let value = Int(limit), (1...1000).contains(value) else { throw APIError.badRequest("limit must be 1…1000, got '\(limit)'") }
            filter.limit = value
        }
        if let statuses = query["statuses"] {
            filter.statuses = try statuses.split(separator: ",").map { name in
                guard let status = ExecutionStatus(rawValue: name.uppercased()) else {
                    throw APIError.badRequest("unknown status '\(name)'; use \(ExecutionStatus.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return status
            }
        }
        filter.pipelineName = query["pipelineName"].map(String.init)
        filter.after = query["after"].map(String.init)
        return filter
    }
}
