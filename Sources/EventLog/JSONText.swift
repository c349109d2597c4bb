import Foundation

/// A JSON document kept as its text, so that events pass through the log without being re-encoded.
public struct JSONText: Hashable, Sendable, CustomStringConvertible {
    public let text: String

    /// Validates that `text` is one JSON value.
    public init(_ text: String) throws(JSONTextError) {
        guard let data = text.data(using: .utf8),
              (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil
        else {
            throw JSONTextError(text: text)
        }
        self.text = text
    }

    /// Wraps text that is already known to be JSON (read back from the log).
    public init(unchecked text: String) {
        self.text = text
    }

    /// Writes a ``JSONValue`` with ``JSONWriter``.
    public init(encoding value: JSONValue) throws {
        self.text = try value.jsonText()
    }

    /// Encodes a value with `JSONEncoder`.
    public init<Value: Encodable>(encoding value: Value) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self.text = String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// Decodes the document: a ``JSONValue`` with Topsail's own parser, anything else with
    /// `JSONDecoder` (which also gives the error for text the parser refuses).
    public func decode<Value: Decodable>(_ type: Value.Type) throws -> Value {
        if Value.self == JSONValue.self, let value = try? JSONParser.parse(text) {
            return value as! Value
        }
        return try JSONDecoder().decode(type, from: Data(text.utf8))
    }

    public var byteCount: Int { text.utf8.count }
    public var description: String { text }

    public static let emptyObject = JSONText(unchecked: "{}")
}

/// Text that is not a JSON document.
public struct JSONTextError: Error, Equatable, CustomStringConvertible {
    public let text: String
    public var description: String {
        let shown = text.count > 80 ? String(text.prefix(80)) + "…" : text
        return "not valid JSON: \(shown)"
    }
}

extension String {
    /// This string as a JSON string literal, quotes included.
    public var jsonQuoted: String {
        var writer = JSONWriter(capacity: utf8.count + 2)
        writer.write(self)
        return writer.text
    }
}
