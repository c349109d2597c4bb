/// The DAG of a pipeline's stages: who waits for whom.
public struct StageGraph: Sendable {
    /// refId → the refIds it requires, in pipeline order.
    public let upstream: [String: [String]]
    /// refId → the refIds that require it.
    public let downstream: [String: [String]]
    /// refIds in pipeline order.
    public let order: [String]

    public init(_ stages: [StageConfig]) {
        var upstream: [String: [String]] = [:]
        var downstream: [String: [String]] = [:]
        var order: [String] = []
        for stage in stages {
            guard let ref = stage.refID else { continue }
            order.append(ref)
            upstream[ref] = stage.requisiteStageRefIDs
            for requisite in stage.requisiteStageRefIDs {
                downstream[requisite, default: []].append(ref)
            }
        }
        self.upstream = upstream
        self.downstream = downstream
        self.order = order
    }

    /// Stages that wait for nothing: they start with the execution.
    public var initialStages: [String] {
        order.filter { upstream[$0, default: []].isEmpty }
    }

    /// One cycle in the requisites, as a list of refIds, or nil when the graph is a DAG.
    public func cycle() -> [String]? {
        enum Mark { case visiting, done }
        var marks: [String: Mark] = [:]
        var stack: [String] = []

        func visit(_ ref: String) -> [String]? {
            switch marks[ref] {
            case .done: return nil
            case .visiting:
                guard let start = stack.firstIndex(of: ref) else { return [ref] }
                return Array(stack[start...])
            case nil: break
            }
            marks[ref] = .visiting
            stack.append(ref)
            for next in upstream[ref, default: []] {
                if let found = visit(next) { return found }
            }
            stack.removeLast()
            marks[ref] = .done
            return nil
        }

        for ref in order {
            if let found = visit(ref) { return found.reversed() }
        }
        return nil
    }
}
