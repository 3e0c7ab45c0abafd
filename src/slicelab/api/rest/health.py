"""Liveness."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

__all__ = ["router"]

router = APIRouter(tags=["health"])


class HealthOut(BaseModel):
    status: Literal["ok"]


@router.get("/health", summary="Liveness (no authentication)")
def health() -> HealthOut:
    return HealthOut(status="ok")
