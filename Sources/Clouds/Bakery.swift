import Crypto
import EventLog
import Foundation
import Logging
import Processes

/// Rosco done with podman (decision 0019): an image is baked from a local base image, a package
/// (a file, directory or tarball under the bakery's package root) and a recipe (Containerfile
/// instructions after `FROM`). Its tag is the content hash of all three — the base image's id,
/// every file of the package, the recipe and the image's labels — so the same inputs give the same
/// tag and reuse the image unless a rebake is asked for. Builds run with no network.
public struct Bakery: Sendable {
    public struct Request: Sendable {
        public var imageName: String
        public var baseImage: String
        /// A path relative to the package root.
        public var package: String
        public var recipe: String
        public var tags: [String: String]
        public var rebake: Bool

        public init(imageName: String, baseImage: String, package: String, recipe: String, tags: [String: String] = [:], rebake: Bool = false) {
            self.imageName = imageName
            self.baseImage = baseImage
            self.package = package
            self.recipe = recipe
            self.tags = tags
            self.rebake = rebake
        }
    }

    public struct Baked: Sendable {
        /// `localhost/<name>:<hash>`.
        public var reference: String
        public var imageID: String
        public var hash: String
        public var cached: Bool
        public var buildLog: String?
        /// `<registry>/<name>:<hash>@<digest>` once pushed to the configured registry.
        public var pushed: String?
    }

    /// Where baked images are pushed ($TOPSAIL_BAKE_REGISTRY): a registry's host and port, and
    /// how to reach it. Without one, images stay in the local image store.
    public struct Registry: Sendable {
        public var host: String
        /// False only for a registry on plain HTTP ($TOPSAIL_BAKE_REGISTRY_TLS_VERIFY=false).
        public var verifyTLS: Bool
        /// A containers-auth.json with the registry's credentials ($TOPSAIL_BAKE_REGISTRY_AUTHFILE).
        public var authFile: String?

        public init(host: String, verifyTLS: Bool = true, authFile: String? = nil) {
            self.host = host
            self.verifyTLS = verifyTLS
            self.authFile = authFile
        }

        /// From the environment, or nil when no registry is configured.
        public static func configured(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Registry? {
            guard let host = environment["TOPSAIL_BAKE_REGISTRY"], !host.isEmpty else { return nil }
            return Registry(host: host, verifyTLS: environment["TOPSAIL_BAKE_REGISTRY_TLS_VERIFY"]?.lowercased() != "false",
                            authFile: environment["TOPSAIL_BAKE_REGISTRY_AUTHFILE"].flatMap { $0.isEmpty ? nil : $0 })
        }
    }

    public struct Found: Sendable {
        public var reference: String
        public var imageID: String
        public var created: String
    }

    /// The package under /opt/package: a directory's contents, a file as it is, a tarball
    /// (tar, gzip, bzip2 or xz) unpacked — inside the build, never on the engine's machine.
    public static let defaultRecipe = "ADD package /opt/package/"

    let packageRoot: URL
    let logDirectory: URL
    let executable: String
    let registry: Registry?

    /// `packageRoot`: where packages are found ($TOPSAIL_BAKE_PACKAGES_DIR, else .topsail/packages);
    /// nothing outside it can be baked into an image. `registry`: where images are pushed.
    public init(packageRoot: URL? = nil, logDirectory: URL? = nil, executable: String = "/usr/bin/podman", registry: Registry? = Registry.configured()) {
        self.registry = registry
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        self.packageRoot = (packageRoot ?? ProcessInfo.processInfo.environment["TOPSAIL_BAKE_PACKAGES_DIR"].map { URL(fileURLWithPath: $0) }
            ?? cwd.appendingPathComponent(".topsail/packages")).standardizedFileURL.resolvingSymlinksInPath()
        self.logDirectory = logDirectory ?? ProcessInfo.processInfo.environment["TOPSAIL_CLOUD_STATE_DIR"].map { URL(fileURLWithPath: $0).appendingPathComponent("bakes") }
            ?? cwd.appendingPathComponent(".topsail/clouds/bakes")
        self.executable = executable
    }

    static func problem(imageName: String) -> String? {
        guard !imageName.isEmpty, imageName.count <= 100, !imageName.hasPrefix("-"), !imageName.hasPrefix("."),
              imageName.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || "-_./".contains($0)) }) else {
            return "an image name is lowercase letters, digits, '-', '_', '.' and '/' (1–100), not '\(imageName)'"
        }
        return nil
    }

    static func problem(label: String) -> String? {
        guard !label.isEmpty, label.count <= 200, label.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 && $0.value != 0x7F && $0 != "\"" && $0 != "\\" }) else {
            return "a tag's key and value are printable ASCII without quotes or backslashes (1–200), not '\(label)'"
        }
        return nil
    }

    /// The package's absolute path, or why it cannot be baked: it must lie inside the package root
    /// (after resolving links), so a pipeline cannot bake the engine's own files into an image.
    public func packagePath(_ package: String) throws(CloudError) -> URL {
        guard !package.isEmpty, !package.hasPrefix("/"), !package.split(separator: "/").contains("..") else {
            throw CloudError("a package is a path inside the bakery's package root (\(packageRoot.path)), not '\(package)'")
        }
        let resolved = packageRoot.appendingPathComponent(package).standardizedFileURL.resolvingSymlinksInPath()
        guard resolved.path.hasPrefix(packageRoot.path + "/") else { throw CloudError("package \(package) lies outside the bakery's package root") }
        guard FileManager.default.fileExists(atPath: resolved.path) else {
            throw CloudError("there is no package \(package) in \(packageRoot.path) (TOPSAIL_BAKE_PACKAGES_DIR)")
        }
        return resolved
    }

    /// Bakes the image, or finds the one these inputs already made.
    public func bake(_ request: Request) async throws(CloudError) -> Baked {
        if let problem = Self.problem(imageName: request.imageName) { throw CloudError(problem) }
        for (key, value) in request.tags { if let problem = Self.problem(label: key) ?? Self.problem(label: value) { throw CloudError(problem) } }
        guard ServerGroupSpec.validImage(request.baseImage) else { throw CloudError("a base image is a reference such as localhost/topsail-base:busybox, not '\(request.baseImage)'") }
        guard request.recipe.utf8.count <= 64 * 1024 else { throw CloudError("a recipe is at most 64 KiB") }
        let package = try packagePath(request.package)
        let base = try await podman(["image", "inspect", "--format", "{{.Id}}", request.baseImage]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !base.isEmpty else { throw CloudError("there is no base image \(request.baseImage): build or import it first (topsail bake base)") }
        var labels = request.tags.map { ("topsail.tag.\($0.key)", $0.value) }
        labels.append(("topsail.package", request.imageName))
        labels.sort { $0.0 < $1.0 }
        var hasher = SHA256()
        hasher.update(data: Array("base \(base)\nrecipe \(request.recipe)\n".utf8))
        for (key, value) in labels { hasher.update(data: Array("label \(key)=\(value)\n".utf8)) }
        try Self.hash(package, as: "package", into: &hasher)
        let hash = hasher.finalize().prefix(16).map { String(format: "%02x", $0) }.joined()
        let reference = "localhost/\(request.imageName):\(hash)"
        if !request.rebake, let existing = try? await podman(["image", "inspect", "--format", "{{.Id}}", reference]) {
            // Pushed again: a registry that lost it (or was configured since) gets it; one that has
            // it answers at once, since the content is the same.
            return Baked(reference: reference, imageID: existing.trimmingCharacters(in: .whitespacesAndNewlines), hash: hash, cached: true, buildLog: nil,
                         pushed: try await push(reference, name: request.imageName, tag: hash))
        }
        let context = FileManager.default.temporaryDirectory.appendingPathComponent("topsail-bake-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: context) }
        let log = logDirectory.appendingPathComponent("\(hash)-\(Int(Date().timeIntervalSince1970)).log")
        do {
            try FileManager.default.createDirectory(at: context, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: package, to: context.appendingPathComponent("package"))
            var file = "FROM \(base)\n"
            for (key, value) in labels { file += "LABEL \"\(key)\"=\"\(value)\"\n" }
            file += "LABEL \"topsail.bake.hash\"=\"\(hash)\"\n" + request.recipe + "\n"
            try file.write(to: context.appendingPathComponent("Containerfile"), atomically: true, encoding: .utf8)
        } catch {
            throw CloudError("cannot prepare the bake of \(request.imageName): \(error)")
        }
        let arguments = ["build", "--network", "none", "--pull=never", "--tag", reference, "--file", context.appendingPathComponent("Containerfile").path, context.path]
        let finished: UnmaskedProcess.Finished
        do {
            finished = try await UnmaskedProcess.run(executable, arguments, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw CloudError("cannot run \(executable): \(error) (ops/setup installs podman)")
        }
        try? (finished.output + finished.errors).write(to: log, atomically: true, encoding: .utf8)
        guard finished.status == 0 else {
            throw CloudError("the bake of \(request.imageName) failed: \(finished.errors.suffix(500)) (log: \(log.path))")
        }
        let id = try await podman(["image", "inspect", "--format", "{{.Id}}", reference]).trimmingCharacters(in: .whitespacesAndNewlines)
        return Baked(reference: reference, imageID: id, hash: hash, cached: false, buildLog: log.path,
                     pushed: try await push(reference, name: request.imageName, tag: hash))
    }

    /// Pushes the image to the configured registry; returns its reference there, with the digest
    /// the registry stored. Nil when no registry is configured.
    func push(_ reference: String, name: String, tag: String) async throws(CloudError) -> String? {
        guard let registry else { return nil }
        let destination = "\(registry.host)/\(name):\(tag)"
        let digestFile = FileManager.default.temporaryDirectory.appendingPathComponent("topsail-push-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: digestFile) }
        var arguments = ["push", "--tls-verify=\(registry.verifyTLS)", "--digestfile", digestFile]
        if let authFile = registry.authFile { arguments += ["--authfile", authFile] }
        arguments += [reference, "docker://\(destination)"]
        do {
            try await podman(arguments)
        } catch {
            throw CloudError("the image \(reference) was baked but not pushed to \(registry.host): \(error.description) (check TOPSAIL_BAKE_REGISTRY and its credentials)")
        }
        let digest = (try? String(contentsOfFile: digestFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return digest.isEmpty ? destination : "\(destination)@\(digest)"
    }

    /// The newest image baked as `name` whose tags include `tags` (findImageFromTags).
    public func find(name: String, tags: [String: String]) async throws(CloudError) -> Found? {
        if let problem = Self.problem(imageName: name) { throw CloudError(problem) }
        var filters = ["--filter", "label=topsail.package=\(name)"]
        for (key, value) in tags.sorted(by: { $0.key < $1.key }) {
            if let problem = Self.problem(label: key) ?? Self.problem(label: value) { throw CloudError(problem) }
            filters += ["--filter", "label=topsail.tag.\(key)=\(value)"]
        }
        let output = try await podman(["images", "--format", "json"] + filters)
        let rows = (try? JSONText(output.isEmpty ? "[]" : output).decode(JSONValue.self).arrayValue) ?? []
        let images = rows.compactMap { row -> Found? in
            guard let id = row["Id"]?.stringValue, let reference = row["Names"]?.arrayValue?.first?.stringValue else { return nil }
            return Found(reference: reference, imageID: id, created: row["CreatedAt"]?.stringValue ?? String(row["Created"]?.intValue ?? 0))
        }
        let created = Dictionary(rows.compactMap { row in row["Id"]?.stringValue.map { ($0, row["Created"]?.intValue ?? 0) } }, uniquingKeysWith: max)
        return images.max { (created[$0.imageID] ?? 0) < (created[$1.imageID] ?? 0) }
    }

    /// Hashes a file or a directory tree (names, kinds, modes and contents, in a fixed order).
    static func hash(_ url: URL, as name: String, into hasher: inout SHA256) throws(CloudError) {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: url.path)
        } catch {
            throw CloudError("cannot read \(url.path): \(error)")
        }
        let type = attributes[.type] as? FileAttributeType
        let mode = (attributes[.posixPermissions] as? Int) ?? 0
        if type == .typeDirectory {
            hasher.update(data: Array("dir \(name) \(mode)\n".utf8))
            let children = ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
            for child in children { try hash(url.appendingPathComponent(child), as: name + "/" + child, into: &hasher) }
        } else if type == .typeSymbolicLink {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: url.path)) ?? ""
            hasher.update(data: Array("link \(name) \(target)\n".utf8))
        } else {
            guard let data = FileManager.default.contents(atPath: url.path) else { throw CloudError("cannot read \(url.path)") }
            hasher.update(data: Array("file \(name) \(mode) \(data.count)\n".utf8))
            hasher.update(data: data)
        }
    }

    @discardableResult
    func podman(_ arguments: [String]) async throws(CloudError) -> String {
        try await PodmanProvider.run(executable, arguments)
    }
}
