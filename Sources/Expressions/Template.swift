import EventLog

/// Strings with `${…}` in them, and JSON trees of such strings (a stage's fields).
public enum Template {
    /// What evaluating one `${…}` found wrong, with the original expression.
    public struct Failure: Sendable, Hashable, CustomStringConvertible {
        public let path: String
        public let expression: String
        public let error: String

        public var description: String { "\(path): ${\(expression)}: \(error)" }
    }

    /// Evaluates a string. A string that is exactly one `${…}` keeps the result's type; otherwise
    /// the pieces are joined as text. An unterminated `${` is an error.
    public static func evaluate(_ text: String, with evaluator: ExpressionEvaluator) throws(ExpressionError) -> JSONValue {
        let parts = try split(text)
        if parts.count == 1, case .expression(let expression) = parts[0] { return try evaluator.evaluate(expression) }
        var result = ""
        for part in parts {
            switch part {
            case .text(let piece): result += piece
            case .expression(let expression): result += try evaluator.evaluate(expression).rendered
            }
            guard result.utf8.count <= ExpressionEvaluator.maximumStringBytes else {
                throw ExpressionError("a string grew past \(ExpressionEvaluator.maximumStringBytes) bytes")
            }
        }
        return .string(result)
    }

    /// Evaluates every string in a JSON tree. A string whose expression fails is left as written
    /// and reported, so one bad field does not hide the others.
    public static func evaluate(_ value: JSONValue, with evaluator: ExpressionEvaluator, path: String = "$") -> (value: JSONValue, failures: [Failure]) {
        switch value {
        case .string(let text) where text.contains("${"):
            do {
                return (try evaluate(text, with: evaluator), [])
            } catch {
                return (value, [Failure(path: path, expression: expressionText(text), error: error.message)])
            }
        case .array(let items):
            var failures: [Failure] = []
            let evaluated = items.enumerated().map { index, item in
                let (result, itemFailures) = evaluate(item, with: evaluator, path: "\(path)[\(index)]")
                failures += itemFailures
                return result
            }
            return (.array(evaluated), failures)
        case .object(let fields):
            var failures: [Failure] = []
            var evaluated: [String: JSONValue] = [:]
            for (key, field) in fields {
                let (result, fieldFailures) = evaluate(field, with: evaluator, path: "\(path).\(key)")
                failures += fieldFailures
                evaluated[key] = result
            }
            return (.object(evaluated), failures.sorted { $0.path < $1.path })
        default:
            return (value, [])
        }
    }

    enum Part: Hashable {
        case text(String)
        case expression(String)
    }

    /// Splits at `${` … `}`, counting braces inside the expression and skipping quoted strings.
    static func split(_ text: String) throws(ExpressionError) -> [Part] {
        let chars = Array(text.unicodeScalars)
        var parts: [Part] = []
        var literal = String.UnicodeScalarView()
        var index = 0
        while index < chars.count {
            if chars[index] == "$", index + 1 < chars.count, chars[index + 1] == "{" {
                var depth = 1
                var end = index + 2
                var quote: Unicode.Scalar?
                while end < chars.count {
                    let c = chars[end]
                    if let open = quote {
                        if c == open { quote = nil }
                    } else if c == "'" || c == "\"" {
                        quote = c
                    } else if c == "{" {
                        depth += 1
                    } else if c == "}" {
                        depth -= 1
                        if depth == 0 { break }
                    }
                    end += 1
                }
                guard end < chars.count else { throw ExpressionError("'${' without its closing '}'") }
                if !literal.isEmpty { parts.append(.text(String(literal))); literal = String.UnicodeScalarView() }
                parts.append(.expression(String(String.UnicodeScalarView(chars[(index + 2)..<end]))))
                index = end + 1
            } else {
                literal.append(chars[index])
                index += 1
            }
        }
        if !literal.isEmpty { parts.append(.text(String(literal))) }
        return parts
    }

    static func expressionText(_ text: String) -> String {
        guard let parts = try? split(text) else { return text }
        return parts.compactMap { if case .expression(let e) = $0 { e } else { nil } }.joined(separator: "}, ${")
    }
}
