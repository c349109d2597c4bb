import EventLog

/// The JSONPath subset webhook stages use to read a status or a URL from a response:
/// `$`, `.name`, `['name']` / `["name"]`, `[index]` (negative counts from the end), and paths
/// written without the leading `$` (`status.state`).
public struct JSONPath: Sendable, Hashable, CustomStringConvertible {
    public enum Step: Sendable, Hashable {
        case key(String)
        case index(Int)
    }

    public let steps: [Step]
    public let description: String

    public init(_ text: String) throws(JSONPathError) {
        description = text
        var rest = Self.trimmed(Substring(text))
        guard !rest.isEmpty else { throw JSONPathError(path: text, reason: "it is empty") }
        guard rest.count <= 1_000 else { throw JSONPathError(path: text, reason: "it is longer than 1000 characters") }
        if rest.first == "$" { rest = rest.dropFirst() } else { rest = "." + rest }
        var steps: [Step] = []
        while let first = rest.first {
            if first == "." {
                rest = rest.dropFirst()
                let name = rest.prefix { $0 != "." && $0 != "[" }
                guard !name.isEmpty else { throw JSONPathError(path: text, reason: "a '.' is not followed by a name") }
                steps.append(.key(String(name)))
                rest = rest.dropFirst(name.count)
            } else if first == "[" {
                rest = rest.dropFirst()
                guard let close = rest.firstIndex(of: "]") else { throw JSONPathError(path: text, reason: "a '[' is not closed") }
                let inside = Self.trimmed(rest[..<close])
                rest = rest[rest.index(after: close)...]
                if let quote = inside.first, quote == "'" || quote == "\"", inside.count >= 2, inside.last == quote {
                    steps.append(.key(String(inside.dropFirst().dropLast())))
                } else if let index = Int(inside) {
                    steps.append(.index(index))
                } else {
                    throw JSONPathError(path: text, reason: "'[\(inside)]' is neither a quoted name nor an index")
                }
            } else {
                throw JSONPathError(path: text, reason: "unexpected '\(first)'")
            }
        }
        self.steps = steps
    }

    private static func trimmed(_ text: Substring) -> Substring {
        var text = text.drop(while: \.isWhitespace)
        while text.last?.isWhitespace == true { text = text.dropLast() }
        return text
    }

    /// The value at the path, or nil when some step does not exist.
    public func value(in root: JSONValue) -> JSONValue? {
        var current = root
        for step in steps {
            switch (step, current) {
            case let (.key(name), .object(object)):
                guard let next = object[name] else { return nil }
                current = next
            case let (.index(index), .array(array)):
                let position = index < 0 ? array.count + index : index
                guard array.indices.contains(position) else { return nil }
                current = array[position]
            default:
                return nil
            }
        }
        return current
    }
}

public struct JSONPathError: Error, Hashable, CustomStringConvertible {
    public let path: String
    public let reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "invalid JSON path '\(path)': \(reason)" }
}
