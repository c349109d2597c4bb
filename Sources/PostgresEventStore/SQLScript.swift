/// Splits a SQL script into statements at top-level semicolons, respecting quotes, comments and
/// dollar-quoted bodies — the extended query protocol takes one statement at a time.
enum SQLScript {
    static func statements(in script: String) -> [String] {
        let chars = Array(script.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var index = 0

        func flush() {
            let text = String(current).trimmingWhitespace()
            if !text.isEmpty && !isOnlyComments(text) { statements.append(text) }
            current = String.UnicodeScalarView()
        }

        while index < chars.count {
            let c = chars[index]
            let next: Unicode.Scalar? = index + 1 < chars.count ? chars[index + 1] : nil
            switch c {
            case "'", "\"":
                let end = closing(of: c, from: index + 1, in: chars)
                current.append(contentsOf: chars[index..<end])
                index = end
            case "-" where next == "-":
                var end = index
                while end < chars.count && chars[end] != "\n" { end += 1 }
                current.append(contentsOf: chars[index..<end])
                index = end
            case "/" where next == "*":
                var end = index + 2
                while end + 1 < chars.count && !(chars[end] == "*" && chars[end + 1] == "/") { end += 1 }
                end = min(end + 2, chars.count)
                current.append(contentsOf: chars[index..<end])
                index = end
            case "$":
                if let tagEnd = dollarTagEnd(from: index, in: chars) {
                    let tag = Array(chars[index...tagEnd])
                    var end = tagEnd + 1
                    while end < chars.count && !matches(tag, at: end, in: chars) { end += 1 }
                    end = min(end + tag.count, chars.count)
                    current.append(contentsOf: chars[index..<end])
                    index = end
                } else {
                    current.append(c)
                    index += 1
                }
            case ";":
                flush()
                index += 1
            default:
                current.append(c)
                index += 1
            }
        }
        flush()
        return statements
    }

    /// The index just past the closing quote (a doubled quote is an escaped one).
    private static func closing(of quote: Unicode.Scalar, from start: Int, in chars: [Unicode.Scalar]) -> Int {
        var index = start
        while index < chars.count {
            if chars[index] == quote {
                if index + 1 < chars.count && chars[index + 1] == quote { index += 2; continue }
                return index + 1
            }
            index += 1
        }
        return chars.count
    }

    /// For `$tag$` starting at `start`, the index of its closing `$`.
    private static func dollarTagEnd(from start: Int, in chars: [Unicode.Scalar]) -> Int? {
        var index = start + 1
        while index < chars.count {
            let c = chars[index]
            if c == "$" { return index }
            guard c.properties.isAlphabetic || c == "_" || (("0"..."9").contains(c) && index > start + 1) else { return nil }
            index += 1
        }
        return nil
    }

    private static func matches(_ tag: [Unicode.Scalar], at index: Int, in chars: [Unicode.Scalar]) -> Bool {
        guard index + tag.count <= chars.count else { return false }
        return Array(chars[index..<index + tag.count]) == tag
    }

    private static func isOnlyComments(_ text: String) -> Bool {
        text.split(separator: "\n").allSatisfy { $0.trimmingWhitespace().isEmpty || $0.trimmingWhitespace().hasPrefix("--") }
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self).unicodeScalars[...]
        while let first = scalars.first, first.properties.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() }
        return String(String.UnicodeScalarView(scalars))
    }
}
