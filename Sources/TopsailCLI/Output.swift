import Foundation

/// Lines for a reader that follows along (a terminal, a pipe, a CI log): written at once, not
/// held in stdio's buffer until the command ends.
enum Output {
    static func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}
