import EventLog
import Foundation

/// What an expression may see: named roots (`execution`, `trigger`, `parameters` …) and the
/// stages of the execution for `#stage`, `#stageByRefId`, `#stageExists` and `#judgment`.
/// There is nothing else: no types, files, processes or network.
public struct ExpressionContext: Sendable {
    public var roots: [String: JSONValue]
    /// Stages as JSON objects with at least `refId`, `name`, `status`, `outputs` (and `context`).
    public var stages: [JSONValue]

    public init(roots: [String: JSONValue], stages: [JSONValue] = []) {
        self.roots = roots
        self.stages = stages
    }
}

/// Evaluates expressions with bounded work and output.
public struct ExpressionEvaluator: Sendable {
    public static let maximumLength = 10_000
    public static let maximumSteps = 100_000
    public static let maximumStringBytes = 1 << 20

    public let context: ExpressionContext

    public init(context: ExpressionContext) {
        self.context = context
    }

    /// Evaluates one expression (without `${ }`).
    public func evaluate(_ expression: String) throws(ExpressionError) -> JSONValue {
        guard expression.utf8.count <= Self.maximumLength else {
            throw ExpressionError("expression longer than \(Self.maximumLength) characters")
        }
        var run = Run(context: context)
        return try run.evaluate(try Parser.parse(expression))
    }
}

private struct Run {
    let context: ExpressionContext
    var steps = 0

    init(context: ExpressionContext) {
        self.context = context
    }

    mutating func evaluate(_ node: Node) throws(ExpressionError) -> JSONValue {
        steps += 1
        guard steps <= ExpressionEvaluator.maximumSteps else { throw ExpressionError("evaluation took more than \(ExpressionEvaluator.maximumSteps) steps") }
        switch node {
        case .literal(let literal):
            switch literal {
            case .number(let value): return .number(value)
            case .string(let value): return .string(value)
            case .bool(let value): return .bool(value)
            case .null: return .null
            }
        case .root(let name):
            guard let value = context.roots[name] else {
                let known = context.roots.keys.sorted()
                throw ExpressionError("unknown name '\(name)' (known: \(known.prefix(20).joined(separator: ", "))\(known.count > 20 ? ", …" : ""))")
            }
            return value
        case let .member(base, name):
            let value = try evaluate(base)
            guard case .object(let fields) = value else { throw ExpressionError("cannot read '\(name)' of \(value.typeName)") }
            guard let field = fields[name] else { throw ExpressionError("no property '\(name)'") }
            return field
        case let .index(base, key):
            let value = try evaluate(base)
            let keyValue = try evaluate(key)
            switch (value, keyValue) {
            case let (.array(items), .number):
                guard let position = keyValue.intValue, items.indices.contains(position) else {
                    throw ExpressionError("index \(keyValue.rendered) is outside 0..<\(items.count)")
                }
                return items[position]
            case let (.object(fields), .string(name)):
                guard let field = fields[name] else { throw ExpressionError("no property '\(name)'") }
                return field
            default:
                throw ExpressionError("cannot index \(value.typeName) with \(keyValue.typeName)")
            }
        case let .call(name, arguments):
            var values: [JSONValue] = []
            for argument in arguments { values.append(try evaluate(argument)) }
            return try Helpers.call(name, values, context: context)
        case let .unary(op, operand):
            let value = try evaluate(operand)
            if op == "!" { return .bool(!(try value.truth())) }
            guard case .number(let number) = value else { throw ExpressionError("cannot negate \(value.typeName)") }
            return .number(-number)
        case let .binary(op, left, right):
            if op == "&&" {
                guard try evaluate(left).truth() else { return false }
                return .bool(try evaluate(right).truth())
            }
            if op == "||" {
                if try evaluate(left).truth() { return true }
                return .bool(try evaluate(right).truth())
            }
            return try Self.apply(op, try evaluate(left), try evaluate(right))
        case let .conditional(condition, whenTrue, whenFalse):
            return try evaluate(condition).truth() ? try evaluate(whenTrue) : try evaluate(whenFalse)
        }
    }

    static func apply(_ op: String, _ left: JSONValue, _ right: JSONValue) throws(ExpressionError) -> JSONValue {
        switch op {
        case "==": return .bool(left == right)
        case "!=": return .bool(left != right)
        case "+":
            if case .number(let a) = left, case .number(let b) = right { return .number(a + b) }
            if case .string = left { return try concatenated(left.rendered + right.rendered) }
            if case .string = right { return try concatenated(left.rendered + right.rendered) }
            throw ExpressionError("cannot add \(left.typeName) and \(right.typeName)")
        case "<", "<=", ">", ">=":
            let ordering: Bool
            switch (left, right) {
            case let (.number(a), .number(b)):
                ordering = op == "<" ? a < b : op == "<=" ? a <= b : op == ">" ? a > b : a >= b
            case let (.string(a), .string(b)):
                ordering = op == "<" ? a < b : op == "<=" ? a <= b : op == ">" ? a > b : a >= b
            default:
                throw ExpressionError("cannot compare \(left.typeName) with \(right.typeName)")
            }
            return .bool(ordering)
        default:
            guard case .number(let a) = left, case .number(let b) = right else {
                throw ExpressionError("'\(op)' needs numbers, not \(left.typeName) and \(right.typeName)")
            }
            switch op {
            case "-": return .number(a - b)
            case "*": return .number(a * b)
            case "/":
                guard b != 0 else { throw ExpressionError("division by zero") }
                return .number(a / b)
            default:
                guard b != 0 else { throw ExpressionError("division by zero") }
                return .number(a.truncatingRemainder(dividingBy: b))
            }
        }
    }

    static func concatenated(_ text: String) throws(ExpressionError) -> JSONValue {
        guard text.utf8.count <= ExpressionEvaluator.maximumStringBytes else {
            throw ExpressionError("a string grew past \(ExpressionEvaluator.maximumStringBytes) bytes")
        }
        return .string(text)
    }
}

extension JSONValue {
    /// Truth for `!`, `&&`, `||`, `?:`: booleans, and the strings "true"/"false" as SpEL reads them.
    func truth() throws(ExpressionError) -> Bool {
        switch self {
        case .bool(let value): return value
        case .string(let text) where text.lowercased() == "true": return true
        case .string(let text) where text.lowercased() == "false": return false
        default: throw ExpressionError("expected a boolean, not \(typeName)")
        }
    }

    /// The value as text inside a larger string.
    public var rendered: String {
        switch self {
        case .null: "null"
        case .bool(let value): value ? "true" : "false"
        case .number: intValue.map(String.init) ?? "\(doubleValue ?? 0)"
        case .string(let text): text
        case .array, .object: (try? JSONText(encoding: self).text) ?? ""
        }
    }
}
