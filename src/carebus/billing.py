"""Claims: one line per billed procedure, amounts in integer cents."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from carebus.errors import NothingToBillError
from carebus.models import Diagnosis, Procedure


@dataclass(frozen=True, slots=True)
class ClaimLine:
    """One billed procedure; the amount is derived so that it can never disagree with its inputs."""

    line_number: int
    system: Literal["CPT", "HCPCS"]
    code: str
    units: int
    charge_cents: int

    @property
    def amount_cents(self) -> int:
        """Units times the per-unit charge."""
        return self.units * self.charge_cents

    def to_item(self) -> dict[str, Any]:
        """The line as a camelCase, JSON-ready dict."""
        return {
            "lineNumber": self.line_number,
            "system": self.system,
            "code": self.code,
            "units": self.units,
            "chargeCents": self.charge_cents,
            "amountCents": self.amount_cents,
        }


@dataclass(frozen=True, slots=True)
class Claim:
    """A professional claim for one encounter."""

    claim_id: str
    encounter_id: str
    practitioner_npi: str
    diagnosis_codes: tuple[str, ...]
    lines: tuple[ClaimLine, ...]
    status: Literal["SUBMITTED"] = "SUBMITTED"

    @property
    def total_cents(self) -> int:
        """The sum of the line amounts."""
        return sum(line.amount_cents for line in self.lines)

    def to_item(self) -> dict[str, Any]:
        """The claim as a camelCase, JSON-ready dict."""
        return {
            "claimId": self.claim_id,
            "encounterId": self.encounter_id,
            "practitionerNpi": self.practitioner_npi,
            "diagnosisCodes": list(self.diagnosis_codes),
            "lines": [line.to_item() for line in self.lines],
            "totalCents": self.total_cents,
            "status": self.status,
        }


def claim_id_for(encounter_id: str) -> str:
    """The claim id of an encounter; deterministic so that redelivered messages stay idempotent."""
    return f"clm-{encounter_id}"


def build_claim(
    encounter_id: str,
    practitioner_npi: str,
    diagnoses: Sequence[Diagnosis],
    procedures: Sequence[Procedure],
) -> Claim:
    """The claim for an encounter's procedures, justified by its diagnoses in the order given."""
    if not procedures:
        raise NothingToBillError("the encounter has no billable procedures")
    return Claim(
        claim_id=claim_id_for(encounter_id),
        encounter_id=encounter_id,
        practitioner_npi=practitioner_npi,
        diagnosis_codes=tuple(diagnosis.code for diagnosis in diagnoses),
        lines=tuple(
            ClaimLine(
                line_number=number,
                system=procedure.system,
                code=procedure.code,
                units=procedure.units,
                charge_cents=procedure.charge_cents,
            )
            for number, procedure in enumerate(procedures, start=1)
        ),
    )
