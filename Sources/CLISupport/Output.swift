import Foundation

/// A progress line on standard error, named by the command that prints it.
public func progress(_ text: String, from command: String = "bench") {
    FileHandle.standardError.write(Data("\(command): \(text)\n".utf8))
}

public func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
