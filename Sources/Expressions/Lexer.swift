/// Tokens of Topsail's `${…}` expression language (Spinnaker's SpEL subset).
enum Token: Hashable {
    case number(Double)
    case string(String)
    case identifier(String)
    case helper(String)          // #name
    case symbol(String)          // . [ ] ( ) , ? : == != < <= > >= && || ! + - * / %
    case end
}

struct Lexer {
    static func tokens(_ text: String) throws(ExpressionError) -> [Token] {
        let chars = Array(text.unicodeScalars)
        var tokens: [Token] = []
        var index = 0
        func isIdentifierStart(_ c: Unicode.Scalar) -> Bool { c.properties.isAlphabetic || c == "_" || c == "$" }
        func isIdentifierPart(_ c: Unicode.Scalar) -> Bool { isIdentifierStart(c) || ("0"..."9").contains(c) }
        while index < chars.count {
            let c = chars[index]
            if c.properties.isWhitespace { index += 1; continue }
            if ("0"..."9").contains(c) {
                var end = index
                while end < chars.count, ("0"..."9").contains(chars[end]) || chars[end] == "." && end + 1 < chars.count && ("0"..."9").contains(chars[end + 1]) { end += 1 }
                guard let value = Double(String(String.UnicodeScalarView(chars[index..<end]))) else { throw ExpressionError("malformed number") }
                tokens.append(.number(value))
                index = end
                continue
            }
            if c == "'" || c == "\"" {
                var value = String.UnicodeScalarView()
                var end = index + 1
                var closed = false
                while end < chars.count {
                    if chars[end] == c {
                        // A doubled quote is a quote, as in SpEL.
                        if end + 1 < chars.count && chars[end + 1] == c { value.append(c); end += 2; continue }
                        closed = true
                        break
                    }
                    value.append(chars[end])
                    end += 1
                }
                guard closed else { throw ExpressionError("unterminated string") }
                tokens.append(.string(String(value)))
                index = end + 1
                continue
            }
            if c == "#" {
                var end = index + 1
                while end < chars.count, isIdentifierPart(chars[end]) { end += 1 }
                guard end > index + 1 else { throw ExpressionError("'#' must be followed by a helper name") }
                tokens.append(.helper(String(String.UnicodeScalarView(chars[index + 1..<end]))))
                index = end
                continue
            }
            if isIdentifierStart(c) {
                var end = index
                while end < chars.count, isIdentifierPart(chars[end]) { end += 1 }
                let word = String(String.UnicodeScalarView(chars[index..<end]))
                switch word {
                case "and": tokens.append(.symbol("&&"))
                case "or": tokens.append(.symbol("||"))
                case "not": tokens.append(.symbol("!"))
                default: tokens.append(.identifier(word))
                }
                index = end
                continue
            }
            let two = index + 1 < chars.count ? String(String.UnicodeScalarView([c, chars[index + 1]])) : ""
            if ["==", "!=", "<=", ">=", "&&", "||"].contains(two) {
                tokens.append(.symbol(two))
                index += 2
                continue
            }
            let one = String(c)
            guard [".", "[", "]", "(", ")", ",", "?", ":", "<", ">", "!", "+", "-", "*", "/", "%"].contains(one) else {
                throw ExpressionError("unexpected character '\(one)'")
            }
            tokens.append(.symbol(one))
            index += 1
        }
        tokens.append(.end)
        return tokens
    }
}
