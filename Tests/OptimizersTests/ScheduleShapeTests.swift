import Optimizers
import XCTest

/// `--lr-schedule` as a typed value: every form parses to the schedule it names (with the base
/// rate and warm-up given apart), prints back as written, and a bad form is refused with the
/// reason.
final class ScheduleShapeTests: XCTestCase {
    func testForms_ParseToTheirSchedules_AndPrintBack() throws {
        let cases: [(String, LearningRateSchedule)] = [
            ("constant", .constant(0.1)),
            ("step:30:0.5", .step(base: 0.1, every: 30, factor: 0.5)),
            ("multistep:100,150:0.1", .multistep(base: 0.1, milestones: [100, 150], factor: 0.1)),
            ("cosine", .cosine(base: 0.1, totalSteps: nil, minimum: 0)),
            ("cosine:0.001", .cosine(base: 0.1, totalSteps: nil, minimum: 0.001)),
        ]
        for (text, schedule) in cases {
            let shape = try ScheduleShape(parsing: text)
            XCTAssertEqual(shape.schedule(baseRate: 0.1), schedule, text)
            XCTAssertEqual(shape.schedule(baseRate: 0.1, warmup: 5), .warmup(steps: 5, then: schedule), text)
            XCTAssertEqual(try ScheduleShape(parsing: shape.description), shape, text)
        }
    }

    func testBadForms_AreRefusedWithTheReason() {
        let cases = [
            ("wavy", "is not constant"),
            ("step:0:0.5", "step:EVERY:FACTOR"),
            ("step:10", "is not constant"),
            ("multistep:150,100:0.1", "must increase"),
            ("multistep:100,x:0.1", "positive integer milestones"),
            ("multistep:100:-1", "positive factor"),
            ("cosine:-1", "≥ 0"),
            ("constant:1", "is not constant"),
        ]
        for (text, reason) in cases {
            XCTAssertThrowsError(try ScheduleShape(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(reason), "\(text): \(error)")
            }
        }
    }
}
