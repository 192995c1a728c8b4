# gdb -p QEMU -batch -x tests/guest/hang.gdb: what a QEMU whose guest
# stopped making progress was doing (run-guest.sh, on a guest timeout):
# the run state, every block node's requests in flight, each tesseract
# node's state, every thread's stack.
set pagination off
printf "run state %d (see RunState in qapi/run-state.json)\n", current_run_state
set $bs = all_bdrv_states.tqh_first
while $bs
  printf "node %s (%s): %d requests in flight\n", $bs->node_name, $bs->drv ? $bs->drv->format_name : "-", $bs->in_flight
  if $bs->drv && $_streq($bs->drv->format_name, "tesseract")
    set $t = (BDRVTesseractState *)$bs->opaque
    printf "  tesseract: serialised requests %p, locks merge %d req %d bind %d, fills running %d, reads %lu writes %lu flushes %lu\n", $t->reqs.lh_first, $t->merge_lock.locked, $t->req_lock.locked, $t->bind_lock.locked, $t->fill_running, $t->reads, $t->writes, $t->flushes
  end
  set $bs = $bs->bs_list.tqe_next
end
# a vCPU asleep with an interrupt pending: stopped?  the virtual clock off?
set $cpu = cpus_queue.tqh_first
while $cpu
  printf "vCPU %d: halted %d stop %d stopped %d interrupt_request 0x%x exit_request %d kicked %d\n", $cpu->cpu_index, $cpu->halted, $cpu->stop, $cpu->stopped, $cpu->interrupt_request, $cpu->exit_request, $cpu->thread_kicked
  set $cpu = $cpu->node.tqe_next
end
printf "virtual clock enabled %d, cpu ticks enabled %d\n", 'qemu-timer.c'::qemu_clocks[1].enabled, 'cpu-timers.c'::timers_state.cpu_ticks_enabled
printf "main loop virtual timers: first %p expires %ld\n", main_loop_tlg.tl[1]->active_timers, main_loop_tlg.tl[1]->active_timers ? main_loop_tlg.tl[1]->active_timers->expire_time : -1
thread apply all bt 30
