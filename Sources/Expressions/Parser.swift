/// An expression's syntax tree.
indirect enum Node: Hashable {
    case literal(LiteralValue)
    case root(String)
    case member(Node, String)
    case index(Node, Node)
    case call(String, [Node])
    case unary(String, Node)
    case binary(String, Node, Node)
    case conditional(Node, Node, Node)
}

enum LiteralValue: Hashable {
    case number(Double), string(String), bool(Bool), null
}

/// Precedence climbing over the token list, with a depth limit so a hostile expression cannot
/// exhaust the stack.
struct Parser {
    static let maximumDepth = 64

    private let tokens: [Token]
    private var position = 0
    private var depth = 0

    static func parse(_ text: String) throws(ExpressionError) -> Node {
        var parser = Parser(tokens: try Lexer.tokens(text))
        let node = try parser.expression()
        guard parser.peek == .end else { throw ExpressionError("unexpected \(parser.peek.text) after the expression") }
        return node
    }

    private init(tokens: [Token]) {
        self.tokens = tokens
    }

    private var peek: Token { tokens[position] }

    private mutating func advance() -> Token {
        defer { position += 1 }
        return tokens[position]
    }

    private mutating func expect(_ symbol: String) throws(ExpressionError) {
        guard advance() == .symbol(symbol) else { throw ExpressionError("expected '\(symbol)' before \(tokens[position - 1].text)") }
    }

    private mutating func expression() throws(ExpressionError) -> Node {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maximumDepth else { throw ExpressionError("expression nested deeper than \(Self.maximumDepth) levels") }
        let condition = try binary(0)
        guard peek == .symbol("?") else { return condition }
        _ = advance()
        let whenTrue = try expression()
        try expect(":")
        return .conditional(condition, whenTrue, try expression())
    }

    private static let precedence: [String: Int] = [
        "||": 1, "&&": 2, "==": 3, "!=": 3, "<": 4, "<=": 4, ">": 4, ">=": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6,
    ]

    private mutating func binary(_ minimum: Int) throws(ExpressionError) -> Node {
        var left = try unary()
        while case .symbol(let op) = peek, let level = Self.precedence[op], level > minimum {
            _ = advance()
            left = .binary(op, left, try binary(level))
        }
        return left
    }

    private mutating func unary() throws(ExpressionError) -> Node {
        if case .symbol(let op) = peek, op == "!" || op == "-" {
            _ = advance()
            depth += 1
            defer { depth -= 1 }
            guard depth <= Self.maximumDepth else { throw ExpressionError("expression nested deeper than \(Self.maximumDepth) levels") }
            return .unary(op, try unary())
        }
        return try postfix(try primary())
    }

    private mutating func postfix(_ start: Node) throws(ExpressionError) -> Node {
        var node = start
        while true {
            if peek == .symbol(".") {
                _ = advance()
                guard case .identifier(let name) = advance() else { throw ExpressionError("expected a property name after '.'") }
                node = .member(node, name)
            } else if peek == .symbol("[") {
                _ = advance()
                let key = try expression()
                try expect("]")
                node = .index(node, key)
            } else {
                return node
            }
        }
    }

    private mutating func primary() throws(ExpressionError) -> Node {
        switch advance() {
        case .number(let value): return .literal(.number(value))
        case .string(let value): return .literal(.string(value))
        case .identifier("true"): return .literal(.bool(true))
        case .identifier("false"): return .literal(.bool(false))
        case .identifier("null"): return .literal(.null)
        case .identifier(let name): return .root(name)
        case .helper(let name):
            try expect("(")
            var arguments: [Node] = []
            if peek != .symbol(")") {
                repeat {
                    if !arguments.isEmpty { _ = advance() }
                    arguments.append(try expression())
                } while peek == .symbol(",")
            }
            try expect(")")
            return .call(name, arguments)
        case .symbol("("):
            let inner = try expression()
            try expect(")")
            return inner
        case let other:
            throw ExpressionError("unexpected \(other.text)")
        }
    }
}

extension Token {
    var text: String {
        switch self {
        case .number(let value): "number \(value)"
        case .string: "string"
        case .identifier(let name): "'\(name)'"
        case .helper(let name): "'#\(name)'"
        case .symbol(let symbol): "'\(symbol)'"
        case .end: "the end"
        }
    }
}
