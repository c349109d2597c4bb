import Foundation
import EventLog

/// Echo's `payloadConstraints`: every entry must match the payload. A key present at the top of
/// the payload names that value, and the entry's value is a regular expression that must be
/// found in it (a partial match, as Java's `find`); any other key is a JSONPath (`$.a.b[0]`,
/// `a.b`, `$..name`, `[*]`) and one of its results must match.
public enum PayloadConstraints {
    /// Nil when every constraint matches; otherwise why the first one does not, in words.
    public static func mismatch(_ constraints: [String: JSONValue], payload: JSONValue) -> String? {
        for (key, expected) in constraints.sorted(by: { $0.key < $1.key }) {
            guard let pattern = text(of: expected) else { return "payload constraint \(key) is not a string" }
            let regex: Regex<AnyRegexOutput>
            do {
                regex = try Regex(pattern)
            } catch {
                return "payload constraint \(key) is not a valid regular expression: \(pattern)"
            }
            let values: [JSONValue]
            if let value = payload[key] {
                values = [value]
            } else {
                guard let path = try? JSONPath(key) else { return "payload constraint \(key) is neither a top-level key nor a valid JSONPath" }
                values = path.evaluate(payload)
            }
            if values.isEmpty { return "the payload has no \(key) (constraint \(key) = \(pattern))" }
            let found = values.contains { value in text(of: value).map { (try? regex.firstMatch(in: $0)) != nil } ?? false }
            if !found {
                let seen = values.prefix(3).map { text(of: $0).map { "'\(String($0.prefix(80)))'" } ?? "null" }.joined(separator: ", ")
                return "payload \(key) is \(seen), which does not match \(pattern)"
            }
        }
        return nil
    }

    /// Problems with constraints as saved (checked when a pipeline is saved).
    public static func problems(_ constraints: JSONValue?) -> [String] {
        guard let constraints else { return [] }
        guard let fields = constraints.objectValue else { return ["payloadConstraints must be an object of key → regular expression"] }
        var problems: [String] = []
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            guard let pattern = value.stringValue else {
                problems.append("payloadConstraints.\(key) must be a string (a regular expression)")
                continue
            }
            if (try? Regex(pattern)) == nil { problems.append("payloadConstraints.\(key) is not a valid regular expression: \(pattern)") }
        }
        return problems
    }

    /// A value as text for matching: strings as they are, numbers without a needless ".0",
    /// booleans as true/false, objects and arrays as JSON; null as nothing.
    static func text(of value: JSONValue) -> String? {
        switch value {
        case .string(let text): text
        case .bool(let flag): flag ? "true" : "false"
        case .number(let number):
            number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        case .null: nil
        case .array, .object: (try? JSONText(encoding: value))?.text
        }
    }
}

/// The part of JSONPath payload constraints use: `$` (optional), `.name`, `['name']`, `[n]`,
/// `[*]`, `.*` and `..name` (at any depth).
struct JSONPath: Sendable {
    enum Step: Sendable, Equatable {
        case key(String)
        case index(Int)
        case all
        case descendant(String)
    }

    struct Invalid: Error {}

    let steps: [Step]

    init(_ text: String) throws {
        var rest = Substring(text)
        if rest.hasPrefix("$") { rest = rest.dropFirst() } else if !rest.hasPrefix(".") && !rest.hasPrefix("[") { rest = "." + rest }
        var steps: [Step] = []
        func name(_ from: inout Substring) -> String {
            let end = from.firstIndex { $0 == "." || $0 == "[" } ?? from.endIndex
            defer { from = from[end...] }
            return String(from[..<end])
        }
        while !rest.isEmpty {
            if rest.hasPrefix("..") {
                rest = rest.dropFirst(2)
                let key = name(&rest)
                guard !key.isEmpty else { throw Invalid() }
                steps.append(.descendant(key))
            } else if rest.hasPrefix(".") {
                rest = rest.dropFirst()
                let key = name(&rest)
                guard !key.isEmpty else { throw Invalid() }
                steps.append(key == "*" ? .all : .key(key))
            } else if rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]") else { throw Invalid() }
                let inside = rest[rest.index(after: rest.startIndex)..<close].trimmingCharacters(in: .whitespaces)
                rest = rest[rest.index(after: close)...]
                if inside == "*" {
                    steps.append(.all)
                } else if let index = Int(inside) {
                    steps.append(.index(index))
                } else if inside.count >= 2, let quote = inside.first, quote == "'" || quote == "\"", inside.last == quote {
                    steps.append(.key(String(inside.dropFirst().dropLast())))
                } else {
                    throw Invalid()
                }
            } else {
                throw Invalid()
            }
        }
        guard !steps.isEmpty else { throw Invalid() }
        self.steps = steps
    }

    /// Every value the path reaches in `root`.
    func evaluate(_ root: JSONValue) -> [JSONValue] {
        var current = [root]
        for step in steps {
            var next: [JSONValue] = []
            for value in current {
                switch step {
                case .key(let key): if let child = value[key] { next.append(child) }
                case .index(let index):
                    if let items = value.arrayValue {
                        let position = index < 0 ? items.count + index : index
                        if items.indices.contains(position) { next.append(items[position]) }
                    }
                case .all:
                    if let items = value.arrayValue { next += items } else if let fields = value.objectValue { next += fields.sorted { $0.key < $1.key }.map(\.value) }
                case .descendant(let key): Self.collect(key, in: value, into: &next)
                }
            }
            current = next
        }
        return current
    }

    private static func collect(_ key: String, in value: JSONValue, into found: inout [JSONValue]) {
        switch value {
        case .object(let fields):
            if let match = fields[key] { found.append(match) }
            for (_, child) in fields.sorted(by: { $0.key < $1.key }) { collect(key, in: child, into: &found) }
        case .array(let items):
            for item in items { collect(key, in: item, into: &found) }
        default:
            break
        }
    }
}
