/// An SVG picture of a topology: the graph with nodes on a circle (arrows when directed), and a
/// heatmap of W (averaged over blocks when n > 128). Pure text output.
public enum TopologyPicture {
    public static func svg(_ topology: Topology) -> String {
        let n = topology.nodeCount
        let size = 520.0
        let radius = 220.0
        let center = 260.0
        func position(_ i: Int) -> (Double, Double) {
            let angle = 2 * Double.pi * Double(i) / Double(max(n, 1)) - Double.pi / 2
            return (center + radius * cos(angle), center + radius * sin(angle))
        }
        var parts: [String] = []
        parts.append(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(2 * size))\" height=\"\(Int(size + 40))\" font-family=\"sans-serif\" font-size=\"12\">"
        )
        parts.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>")
        parts.append(
            "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555\"/></marker></defs>"
        )
        parts.append(
            "<text x=\"10\" y=\"\(Int(size + 25))\">\(escape(topology.name)): \(n) nodes, \(topology.edgeCount) edges\(topology.isDirected ? " (directed)" : "")</text>"
        )
        let nodeRadius = max(1.5, min(8, 400 / Double(max(n, 1))))
        for (u, v) in topology.graph.edges {
            let (x1, y1) = position(u)
            let (x2, y2) = position(v)
            let marker = topology.isDirected ? " marker-end=\"url(#arrow)\"" : ""
            parts.append(
                "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\" stroke=\"#555\" stroke-opacity=\"0.5\" stroke-width=\"1\"\(marker)/>"
            )
        }
        for i in 0..<n {
            let (x, y) = position(i)
            parts.append(
                "<circle cx=\"\(f(x))\" cy=\"\(f(y))\" r=\"\(f(nodeRadius))\" fill=\"#1f77b4\"><title>node \(i)</title></circle>"
            )
        }
        // Heatmap of W.
        let cells = min(n, 128)
        let cell = (size - 40) / Double(max(cells, 1))
        let dense = topology.denseMixingMatrix
        var blocks = [Double](repeating: 0, count: cells * cells)
        for i in 0..<n { for j in 0..<n { blocks[(i * cells / n) * cells + (j * cells / n)] += dense[i * n + j] } }
        let scale = Double(n) / Double(cells) * Double(n) / Double(cells)
        let maximum = max(blocks.map { $0 / scale }.max() ?? 1, 1e-12)
        let left = size + 20
        parts.append(
            "<text x=\"\(f(left))\" y=\"14\">W\(cells < n ? " (block means)" : ""), darker = larger; max \(f(maximum))</text>"
        )
        for r in 0..<cells {
            for c in 0..<cells {
                let value = blocks[r * cells + c] / scale / maximum
                guard value > 0 else { continue }
                let shade = Int(255 * (1 - value))
                parts.append(
                    "<rect x=\"\(f(left + Double(c) * cell))\" y=\"\(f(20 + Double(r) * cell))\" width=\"\(f(cell))\" height=\"\(f(cell))\" fill=\"rgb(\(shade),\(shade),255)\"/>"
                )
            }
        }
        parts.append(
            "<rect x=\"\(f(left))\" y=\"20\" width=\"\(f(cell * Double(cells)))\" height=\"\(f(cell * Double(cells)))\" fill=\"none\" stroke=\"#999\"/>"
        )
        parts.append("</svg>")
        return parts.joined(separator: "\n") + "\n"
    }

    private static func f(_ x: Double) -> String {
        let rounded = (x * 100).rounded() / 100
        return "\(rounded)"
    }

    private static func escape(_ text: String) -> String {
        var result = ""
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            default: result.append(character)
            }
        }
        return result
    }
}

#if canImport(Glibc)
    import Glibc
#endif
