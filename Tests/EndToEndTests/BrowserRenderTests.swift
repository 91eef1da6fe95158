import Datasets
import Foundation
import XCTest

/// The RGB(A) pixels of an 8-bit PNG (what Chromium's screenshots are), decoded with zlib:
/// chunks, the IDAT stream, and the five scanline filters (PNG specification, section 9).
struct PNGImage {
    let width: Int
    let height: Int
    let channels: Int
    let pixels: [UInt8]

    init(_ data: Data) throws {
        let bytes = [UInt8](data)
        guard bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) else {
            throw DataError(file: "png", reason: "not a PNG")
        }
        func be32(_ i: Int) -> Int { bytes[i..<(i + 4)].reduce(0) { $0 << 8 | Int($1) } }
        var offset = 8
        var (width, height, channels) = (0, 0, 0)
        var compressed: [UInt8] = []
        while offset + 8 <= bytes.count {
            let length = be32(offset)
            let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
            let body = Array(bytes[(offset + 8)..<(offset + 8 + length)])
            if type == "IHDR" {
                width = body[0..<4].reduce(0) { $0 << 8 | Int($1) }
                height = body[4..<8].reduce(0) { $0 << 8 | Int($1) }
                guard body[8] == 8, [2, 6].contains(body[9]), body[12] == 0 else {
                    throw DataError(file: "png", reason: "only 8-bit RGB/RGBA, not interlaced")
                }
                channels = body[9] == 6 ? 4 : 3
            } else if type == "IDAT" {
                compressed += body
            }
            offset += 12 + length
        }
        let raw = try GzipInflater.decompress(compressed, name: "png", acceptsZlib: true)
        let stride = width * channels
        var pixels = [UInt8](repeating: 0, count: height * stride)
        for row in 0..<height {
            let filter = raw[row * (stride + 1)]
            let line = raw[(row * (stride + 1) + 1)..<((row + 1) * (stride + 1))]
            for (k, value) in line.enumerated() {
                let a = k >= channels ? Int(pixels[row * stride + k - channels]) : 0
                let b = row > 0 ? Int(pixels[(row - 1) * stride + k]) : 0
                let c = row > 0 && k >= channels ? Int(pixels[(row - 1) * stride + k - channels]) : 0
                let predictor: Int
                switch filter {
                case 0: predictor = 0
                case 1: predictor = a
                case 2: predictor = b
                case 3: predictor = (a + b) / 2
                case 4:
                    let p = a + b - c
                    let (pa, pb, pc) = (abs(p - a), abs(p - b), abs(p - c))
                    predictor = pa <= pb && pa <= pc ? a : (pb <= pc ? b : c)
                default: throw DataError(file: "png", reason: "bad filter \(filter)")
                }
                pixels[row * stride + k] = UInt8(truncatingIfNeeded: Int(value) + predictor)
            }
        }
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// (fraction of pixels that are not white, number of distinct colours).
    var inkAndColours: (ink: Double, colours: Int) {
        var ink = 0
        var colours = Set<UInt32>()
        for i in 0..<(width * height) {
            let (r, g, b) = (pixels[i * channels], pixels[i * channels + 1], pixels[i * channels + 2])
            if r < 250 || g < 250 || b < 250 { ink += 1 }
            colours.insert(UInt32(r) << 16 | UInt32(g) << 8 | UInt32(b))
        }
        return (Double(ink) / Double(width * height), colours.count)
    }
}

/// A real run's report.html as a browser shows it: headless Chromium renders it without a
/// console error (an SVG attribute that does not parse, a NaN coordinate), and the screenshot
/// has charts on it. Skipped, with the reason, when Chromium is not installed.
final class BrowserRenderTests: XCTestCase {
    func testReportPage_RendersInChromium_WithoutConsoleErrors() throws {
        guard
            let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else {
            print("BrowserRenderTests: skipped: chromium is not installed (apt-get install -y chromium)")
            throw XCTSkip("chromium is not installed (apt-get install -y chromium)")
        }
        let scratch = try temporaryDirectory("browser")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let run = scratch.appendingPathComponent("run")
        let child = try Child(
            try dsgdBinary(),
            [
                "simulate", "--workers", "4", "--rounds", "30", "--model", "784-16-10", "--data", "synthetic",
                "--eval-every", "10", "--sharpness-every", "30", "--sharpness-examples", "64", "--lanczos-iterations",
                "4", "--hutchinson-probes", "2", "--run-dir", run.path,
            ], output: scratch.appendingPathComponent("log"))
        XCTAssertEqual(child.wait(seconds: 120), 0, child.text)
        let screenshot = scratch.appendingPathComponent("page.png")
        let render = try Child(
            URL(fileURLWithPath: browser),
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
                "--v=0", "--window-size=1400,2400", "--screenshot=\(screenshot.path)",
                "file://\(run.appendingPathComponent("report.html").path)",
            ], environment: ["HOME": scratch.path], output: scratch.appendingPathComponent("chromium.log"))
        XCTAssertEqual(render.wait(seconds: 120), 0, render.text)
        let consoleLines = render.text.split(separator: "\n").filter { $0.contains(":CONSOLE") }
        XCTAssertEqual(consoleLines, [], "console messages while rendering report.html")
        let image = try PNGImage(Data(contentsOf: screenshot))
        XCTAssertEqual(image.width, 1400)
        let (ink, colours) = image.inkAndColours
        XCTAssertGreaterThan(ink, 0.02, "the screenshot is (nearly) blank")
        XCTAssertGreaterThan(colours, 20, "charts draw in several colours")
    }

    /// The checker itself: a page with an unparsable SVG coordinate is caught.
    func testConsoleCheck_CatchesABadCoordinate() throws {
        guard
            let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else { throw XCTSkip("chromium is not installed (apt-get install -y chromium)") }
        let scratch = try temporaryDirectory("browser-bad")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let page = scratch.appendingPathComponent("bad.html")
        try
            #"<html><body><svg width="50" height="50" xmlns="http://www.w3.org/2000/svg"><circle cx="nan" cy="5" r="3"/></svg></body></html>"#
            .write(to: page, atomically: true, encoding: .utf8)
        let render = try Child(
            URL(fileURLWithPath: browser),
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                "--screenshot=\(scratch.appendingPathComponent("bad.png").path)", "file://\(page.path)",
            ], environment: ["HOME": scratch.path], output: scratch.appendingPathComponent("chromium.log"))
        XCTAssertEqual(render.wait(seconds: 120), 0, render.text)
        XCTAssertTrue(render.text.contains(":CONSOLE"), render.text)
        let image = try PNGImage(Data(contentsOf: scratch.appendingPathComponent("bad.png")))
        XCTAssertLessThan(image.inkAndColours.ink, 0.02, "a blank page reads as blank")
    }
}
