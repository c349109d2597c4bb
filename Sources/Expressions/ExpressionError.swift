/// Why an expression could not be evaluated; `description` names the problem and the limit hit.
public struct ExpressionError: Error, Hashable, CustomStringConvertible {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
