import ArgumentParser
import CLISupport
import Foundation

/// `topsail bake base`: the base images the `bake` stage builds on, made on this machine (no
/// registry is needed): busybox alone (`FROM scratch` and Debian's busybox-static), or a minimal
/// Debian made by mmdebstrap and imported.
struct BakeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bake", abstract: "Make base images for the bake stage.", subcommands: [BakeBaseCommand.self])
}

struct BakeBaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "base",
        abstract: "Make a base image: localhost/topsail-base:busybox (FROM scratch with a static busybox) or localhost/topsail-base:<suite> (mmdebstrap's minbase Debian).",
        discussion: "Examples: topsail bake base; topsail bake base --debian bookworm --include ca-certificates. A Debian base takes about 20 s and needs Debian's mirror; a bake stage names it as baseOs bookworm.")

    @Option(help: "Make a Debian base of this suite with mmdebstrap instead of the busybox one.")
    var debian: String?

    @Option(help: "Debian packages to include (comma-separated), with --debian.")
    var include: String?

    @Option(help: "The podman executable.")
    var podman: String = "/usr/bin/podman"

    func validate() throws {
        if let debian, debian.isEmpty || !debian.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) { throw ValidationError("--debian is a suite name such as bookworm") }
        if let include, !include.allSatisfy({ $0.isLetter || $0.isNumber || "-.+,".contains($0) }) { throw ValidationError("--include is package names separated by commas") }
        if include != nil && debian == nil { throw ValidationError("--include goes with --debian") }
    }

    func run() async throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("topsail-base-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let tag: String
        if let suite = debian {
            tag = "localhost/topsail-base:\(suite)"
            let tarball = work.appendingPathComponent("base.tar").path
            FileHandle.standardError.write(Data("mmdebstrap \(suite) (about 20 s)…\n".utf8))
            try Self.run("/usr/bin/mmdebstrap", ["--variant=minbase"] + (include.map { ["--include=\($0)"] } ?? []) + [suite, tarball],
                         hint: "apt-get install mmdebstrap")
            FileHandle.standardError.write(Data("podman import…\n".utf8))
            try Self.run(podman, ["import", tarball, tag], hint: "ops/setup installs podman")
        } else {
            tag = "localhost/topsail-base:busybox"
            guard FileManager.default.fileExists(atPath: "/usr/bin/busybox") else { throw CLIError("no /usr/bin/busybox: apt-get install busybox-static (ops/setup does)") }
            try FileManager.default.copyItem(atPath: "/usr/bin/busybox", toPath: work.appendingPathComponent("busybox").path)
            try "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
                .write(to: work.appendingPathComponent("Containerfile"), atomically: true, encoding: .utf8)
            try Self.run(podman, ["build", "--quiet", "--network", "none", "--tag", tag, work.path], hint: "ops/setup installs podman")
        }
        print(tag)
    }

    static func run(_ executable: String, _ arguments: [String], hint: String) throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else { throw CLIError("no \(executable): \(hint)") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.standardError
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CLIError("\(executable) \(arguments.first ?? "") failed (exit \(process.terminationStatus))") }
    }
}
