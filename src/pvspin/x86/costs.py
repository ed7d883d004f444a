"""Cycle costs of the paravirt lock call sites, derived from the instructions each variant runs.

Site code charges these with ``yield ops.work(cycles, ops.WORK_CALL)``.  They are the *call
overhead* only: the memory operations of the called code (the unlock store, the cmpxchg, ...) are
operations of their own, priced by the driver's cache model.

Assumptions (not measurements; Agner Fog-style figures for a Haswell/Skylake-class core, all
branches correctly predicted, stack and slot in L1):

* ``L1_LOAD = 4``: L1D load-to-use latency (Agner Fog, microarchitecture guide: 4-5 cycles on
  Haswell/Skylake).  An indirect call through memory must load its target before it can branch.
* ``CALL_RET = 2``: a predicted ``call`` + ``ret`` pair, one taken branch each (the return stack
  buffer predicts the ``ret``); includes the return-address push/pop, which the stack engine folds.
* ``PUSH = POP = 1``: one store / load uop each; no overlap is assumed, so a thunk's 8 pushes and
  8 pops cost 16 cycles on the critical path of the caller.
* ``xor %eax,%eax`` costs 0: a zeroing idiom, eliminated at register rename.
* Multi-byte NOP padding costs 0: NOPs are decoded and retired alongside the neighbouring
  instruction and use no execution unit.  So a patched site charges nothing for its padding, and
  the patched native unlock is exactly its one release store.

Variants:

==========================  ========================================================  ======
variant                     instructions executed                                     cycles
==========================  ========================================================  ======
``INDIRECT_CALL``           ``call *pv_lock_ops+N`` (load slot, indirect branch), ret  6
``DIRECT_CALL``             ``call target`` (patched ``e8``), ret                     2
``CALLEE_SAVE_THUNK``       ``PV_CALLEE_SAVE_REGS_THUNK`` on x86-64: push/pop of rcx,   18
                            rdx, rsi, rdi, r8-r11 (8 + 8) around an inner call/ret
``PV_UNLOCK_ASM_THUNK``     the hand-written x86-64 ``__raw_callee_save___pv_queued_     2
                            spin_unlock`` of v4.5 (d78045306c41): saves only ``rdx``
                            and has no inner call on its fast path (push + pop)
``KVM_PREEMPTED_ASM_THUNK`` hand-written ``__raw_callee_save___kvm_vcpu_is_preempted``  0
                            (saves nothing; its steal-time load is the memory op)
``INLINE``                  patched inline code: ``movb $0,(%rdi)`` / ``xor``         0
==========================  ========================================================  ======

The 2015 commit's PV unlock (v4.2) still went through the generic 8-register thunk; the asm thunk
arrived in v4.5 (d78045306c41), whose message names the 8 saved/restored registers as the overhead
it removes and measures an uncontended lock+unlock pair at ~24-27 ns in a KVM guest.
"""

from __future__ import annotations

L1_LOAD = 4
CALL_RET = 2
PUSH = 1
POP = 1
CALLEE_SAVED_REGS_X86_64 = 8  # rcx, rdx, rsi, rdi, r8, r9, r10, r11

DIRECT_CALL = CALL_RET
INDIRECT_CALL = L1_LOAD + CALL_RET
CALLEE_SAVE_THUNK = CALLEE_SAVED_REGS_X86_64 * (PUSH + POP) + CALL_RET
PV_UNLOCK_ASM_THUNK = PUSH + POP
KVM_PREEMPTED_ASM_THUNK = 0
INLINE = 0
