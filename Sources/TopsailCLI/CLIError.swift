/// A failure while a command runs (not a usage mistake): printed as one line, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}
