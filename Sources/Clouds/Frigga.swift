/// Spinnaker's naming of clusters and server groups (Netflix's Frigga): a cluster is
/// `app[-stack[-detail]]`, a server group is its cluster with a push sequence, `-v000` to `-v999`.
public struct ServerGroupName: Sendable, Hashable, CustomStringConvertible {
    public var application: String
    public var stack: String?
    public var detail: String?
    public var sequence: Int?

    public init(application: String, stack: String? = nil, detail: String? = nil, sequence: Int? = nil) {
        self.application = application
        self.stack = stack.flatMap { $0.isEmpty ? nil : $0 }
        self.detail = detail.flatMap { $0.isEmpty ? nil : $0 }
        self.sequence = sequence
    }

    /// `app`, `app-stack`, `app-stack-detail`, or `app--detail` when there is a detail and no stack.
    public var cluster: String {
        switch (stack, detail) {
        case (nil, nil): application
        case (let stack?, nil): "\(application)-\(stack)"
        case (nil, let detail?): "\(application)--\(detail)"
        case (let stack?, let detail?): "\(application)-\(stack)-\(detail)"
        }
    }

    public var description: String {
        sequence.map { "\(cluster)-v\(String(format: "%03d", $0))" } ?? cluster
    }

    /// Reads a server group's (or a cluster's) name; nil when it is not Frigga-shaped.
    public init?(parsing name: String) {
        var base = Substring(name)
        var sequence: Int?
        if let dash = name.lastIndex(of: "-"), name[name.index(after: dash)...].hasPrefix("v") {
            let digits = name[name.index(dash, offsetBy: 2)...]
            if digits.count == 3, let number = Int(digits) {
                sequence = number
                base = name[..<dash]
            }
        }
        let parts = base.split(separator: "-", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard let application = parts.first, !application.isEmpty, Self.valid(application) else { return nil }
        let stack = parts.count > 1 ? parts[1] : nil
        let detail = parts.count > 2 ? parts[2] : nil
        guard (stack ?? "").allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }),
              (detail ?? "").allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else { return nil }
        self.init(application: application, stack: stack, detail: detail, sequence: sequence)
    }

    /// What is wrong with the name's parts, if anything: they reach container names, labels and
    /// load balancers' runtime commands, so only letters, digits and '_' (and '-' in a detail).
    public var problem: String? {
        func word(_ text: String, dash: Bool) -> Bool {
            !text.isEmpty && text.count <= 100 && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || (dash && $0 == "-")) }
        }
        guard word(application, dash: false) else { return "an application in a server group's name is letters, digits and '_' (1–100), not '\(application)'" }
        if let stack, !word(stack, dash: false) { return "a stack is letters, digits and '_' (1–100), not '\(stack)'" }
        if let detail, !word(detail, dash: true) { return "a detail is letters, digits, '_' and '-' (1–100), not '\(detail)'" }
        if let sequence, !(0...999).contains(sequence) { return "a server group's sequence is 0–999" }
        return nil
    }

    static func valid(_ application: String) -> Bool {
        application.allSatisfy { ($0.isLetter && $0.isASCII) || ($0.isNumber && $0.isASCII) || $0 == "_" }
    }

    /// The next server group of `cluster` after `existing` (names of its server groups): one past
    /// the highest sequence, wrapping after 999 to the lowest free one.
    public static func next(in cluster: ServerGroupName, existing: [String]) -> ServerGroupName {
        let taken = Set(existing.compactMap { ServerGroupName(parsing: $0) }.filter { $0.cluster == cluster.cluster }.compactMap(\.sequence))
        var next = cluster
        let highest = taken.max() ?? -1
        if highest < 999 {
            next.sequence = highest + 1
        } else {
            next.sequence = (0...999).first { !taken.contains($0) } ?? 0
        }
        return next
    }
}
