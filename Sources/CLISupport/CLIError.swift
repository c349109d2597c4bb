/// A failure while a command runs (not a usage mistake): printed as one line, exit status 1.
public struct CLIError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
