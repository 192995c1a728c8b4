/*
 * Boot sector for tests/guest/kvm-access-test.sh (loaded by SeaBIOS at
 * 0x7c00).  Enables A20, switches to flat 32-bit protected mode (no BIOS
 * from then on) and fills a hot region (256 KiB at 2 MiB) and a cold one
 * (4 MiB at 4 MiB) with dword i = its address ^ 0x5a5a5a5a.  Says 'R' on
 * port 0x404 (an isa-debugcon), then reads every dword of the hot region
 * over and over, never touching the cold one, until a byte arrives on
 * COM1 (0x3f8).  Then reads both regions, counts the dwords that differ
 * from the pattern and writes the count to port 0x404 (4 bytes, low
 * first), then 'D'.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
    .equ HOT, 0x200000
    .equ HOT_END, 0x240000
    .equ COLD, 0x400000
    .equ COLD_END, 0x800000
    .equ KEY, 0x5a5a5a5a

    .code16
    .globl _start
_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7c00, %sp
    in $0x92, %al                   # fast A20 on
    or $2, %al
    and $0xfe, %al
    out %al, $0x92
    lgdtl gdtr
    mov %cr0, %eax
    or $1, %al
    mov %eax, %cr0
    ljmp $0x08, $pm

    .code32
pm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %esp
    mov $HOT, %edi                  # fill both regions
    mov $HOT_END, %ecx
    call fill
    mov $COLD, %edi
    mov $COLD_END, %ecx
    call fill
    mov $0x404, %dx
    mov $'R', %al
    out %al, %dx
hot:
    mov $HOT, %esi                  # read the hot region
1:  mov (%esi), %eax
    add $4, %esi
    cmp $HOT_END, %esi
    jb 1b
    mov $0x3fd, %dx                 # COM1 line status: data ready?
    in %dx, %al
    test $1, %al
    jz hot
    mov $0x3f8, %dx
    in %dx, %al
    xor %ebx, %ebx                  # count what differs
    mov $HOT, %esi
    mov $HOT_END, %ecx
    call check
    mov $COLD, %esi
    mov $COLD_END, %ecx
    call check
    mov $0x404, %dx
    mov $4, %ecx
2:  mov %bl, %al
    out %al, %dx
    shr $8, %ebx
    loop 2b
    mov $'D', %al
    out %al, %dx
3:  hlt
    jmp 3b

/* [%edi, %ecx): each dword = its address ^ KEY */
fill:
    mov %edi, %eax
    xor $KEY, %eax
    mov %eax, (%edi)
    add $4, %edi
    cmp %ecx, %edi
    jb fill
    ret

/* [%esi, %ecx): %ebx += the dwords that are not their address ^ KEY */
check:
    mov %esi, %eax
    xor $KEY, %eax
    cmp %eax, (%esi)
    je 1f
    inc %ebx
1:  add $4, %esi
    cmp %ecx, %esi
    jb check
    ret

    .p2align 3
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        # 0x08: code, flat 4 GiB, 32-bit
    .quad 0x00cf92000000ffff        # 0x10: data, flat 4 GiB
gdtr:
    .word gdtr - gdt - 1
    .long gdt

    . = _start + 510
    .byte 0x55, 0xaa
