/*
 * Boot sector for tests/guest/kvm-test.sh (16-bit real mode, loaded by
 * SeaBIOS at 0x7c00).  Fills 64 KiB at 0x20000 with a pattern, says 'R'
 * on port 0x404 (an isa-debugcon), waits 3 s (int 15h, AH=86h) while the
 * test swaps the region out, then increments every byte of its upper
 * half (write faults), sums all 64 KiB byte by byte (read faults) and
 * writes the 16-bit sum to port 0x404, low byte first.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
    .code16
    .globl _start
_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7c00, %sp
    sti
    mov $0x2000, %ax
    mov %ax, %es
    xor %di, %di
1:  mov %di, %ax                   # byte i = ((i & 0xff) & (i >> 8)) + 0x11
    and %ah, %al
    add $0x11, %al
    mov %al, %es:(%di)
    inc %di
    jnz 1b
    mov $0x404, %dx
    mov $'R', %al
    out %al, %dx
    mov $0x86, %ah                  # wait 0x2dc6c0 us
    mov $0x2d, %cx
    mov $0xc6c0, %dx
    int $0x15
    mov $0x8000, %di
2:  incb %es:(%di)
    inc %di
    jnz 2b
    xor %di, %di
    xor %bx, %bx
    xor %ah, %ah
3:  mov %es:(%di), %al
    add %ax, %bx
    inc %di
    jnz 3b
    mov $0x404, %dx
    mov %bl, %al
    out %al, %dx
    mov %bh, %al
    out %al, %dx
    cli
4:  hlt
    jmp 4b
    . = _start + 510
    .byte 0x55, 0xaa
