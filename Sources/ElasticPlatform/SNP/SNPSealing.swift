import ElasticCrypto

/// Choosing MSG_KEY_REQ parameters for a store, deriving the key again at mount, and naming
/// what changed when the key no longer matches.
public enum SNPSealing {
    /// Defaults that keep a store usable and safe: VCEK root; measurement, policy and TCB mixed;
    /// TCB pinned to the platform's committed TCB (so a TCB rollback cannot open the store and a
    /// TCB upgrade does not silently change the key: `elastic slot reseal` moves it forward).
    public static let defaultFields: GuestFieldSelect = [.measurement, .guestPolicy, .tcbVersion]

    /// Parameters for a slot sealed to this VM now. With a VCEK root the slot records this
    /// chip's CHIP_ID, so a mount on another host can say why the key differs.
    public static func parameters(
        guest: SNPGuest, vmpl: UInt32, root: SNPRootKey = .vcek, fields: GuestFieldSelect = defaultFields,
        tcb: UInt64? = nil
    ) throws -> SNPSealParameters {
        let report = try guest.report(reportData: Array(repeating: 0, count: 64), vmpl: vmpl)
        let committed = report.committedTCB
        let pinned = TCBVersion(raw: tcb ?? committed.raw, layout: report.tcbLayout)
        guard pinned.isAtMost(committed) else {
            throw SEVError.invalidRequest("TCB \(pinned) is above the committed TCB \(committed)")
        }
        return SNPSealParameters(
            rootKey: root, fields: fields.rawValue, vmpl: vmpl, guestSVN: 0, tcbVersion: pinned.raw,
            policy: report.policy, measurement: report.measurement, chipID: root == .vcek ? report.chipID : nil)
    }

    public static func request(_ p: SNPSealParameters) -> SNPDerivedKeyRequest {
        SNPDerivedKeyRequest(
            rootKey: p.rootKey, fields: GuestFieldSelect(rawValue: p.fields), vmpl: p.vmpl, guestSVN: p.guestSVN,
            tcbVersion: p.tcbVersion)
    }

    /// The root a slot sealed with the firmware default (KEY_SEL 0) actually used on this host:
    /// the VLEK when the host installed one (reports are then signed with it), else the VCEK.
    public static func resolvedDefaultRoot(guest: SNPGuest, vmpl: UInt32) throws -> SNPRootKey {
        try guest.report(reportData: Array(repeating: 0, count: 64), vmpl: vmpl).signingKey == 1 ? .vlek : .vcek
    }

    /// The slot secret for `p` on this VM. Before asking the firmware, compares this VM's report
    /// with what the slot recorded, so a refusal names the mismatch.
    public static func derive(guest: SNPGuest, _ p: SNPSealParameters) throws -> [UInt8] {
        let fields = GuestFieldSelect(rawValue: p.fields)
        let report = try guest.report(reportData: Array(repeating: 0, count: 64), vmpl: p.vmpl)
        if p.rootKey == .vcek, let sealedOn = p.chipID, sealedOn != report.chipID {
            let here = report.chipID
            let masked = sealedOn.allSatisfy { $0 == 0 } || here.allSatisfy { $0 == 0 }
            // With the chip ID masked on either side only the firmware can tell; let it decide.
            if !masked {
                throw SEVError.invalidRequest(
                    "sealed on chip \(SNPSealParameters.chipName(sealedOn)), running on chip \(SNPSealParameters.chipName(here)): a VCEK-sealed slot opens only on the chip it was sealed on. Open the store with its recovery slot (key file or passphrase) and add a slot sealed here (`elastic slot add --seal snp`); see docs/key-derivation.md, moving a store to another host"
                )
            }
        }
        if fields.contains(.measurement) && report.measurement != p.measurement {
            throw SEVError.invalidRequest(
                "launch measurement differs: sealed for \(Hex.encode(p.measurement.prefix(8)))…, this VM has \(Hex.encode(report.measurement.prefix(8)))…"
            )
        }
        if fields.contains(.guestPolicy) && report.policy != p.policy {
            throw SEVError.invalidRequest(
                "guest policy differs: sealed for 0x\(String(p.policy, radix: 16)), this VM has 0x\(String(report.policy, radix: 16))"
            )
        }
        let sealedTCB = TCBVersion(raw: p.tcbVersion, layout: report.tcbLayout)
        if fields.contains(.tcbVersion) && !sealedTCB.isAtMost(report.committedTCB) {
            throw SEVError.invalidRequest(
                "TCB rollback: sealed for TCB \(sealedTCB), the platform's committed TCB is \(report.committedTCB)")
        }
        let key = try guest.derivedKey(request(p))
        return key.withUnsafeBytes { Array($0) }
    }
}
