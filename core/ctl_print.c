/* Human and JSON renderings of control responses, for vmon ctl. */
#include "core/ctl.h"

#include "core/json.h"
#include "core/util.h"

static const char *state_name(Ferry__Ctl__VmState s)
{
	switch (s) {
	case FERRY__CTL__VM_STATE__VM_STATE_CREATED: return "created";
	case FERRY__CTL__VM_STATE__VM_STATE_RUNNING: return "running";
	case FERRY__CTL__VM_STATE__VM_STATE_PAUSED:  return "paused";
	case FERRY__CTL__VM_STATE__VM_STATE_STOPPED: return "stopped";
	case FERRY__CTL__VM_STATE__VM_STATE_CRASHED: return "crashed";
	default: return "unknown";
	}
}

static void status_json(struct json *j, const Ferry__Ctl__Status *st)
{
	json_obj_begin(j, "status");
	json_str(j, "name", st->name);
	json_str(j, "state", state_name(st->state));
	json_u64(j, "vcpus", st->vcpus);
	json_u64(j, "mem_bytes", st->mem_bytes);
	json_str(j, "cpu_model", st->cpu_model);
	json_str(j, "dirty_mode", st->dirty_mode);
	json_u64(j, "uptime_ns", st->uptime_ns);
	json_str(j, "guest", st->guest);
	json_i64(j, "pid", st->pid);
	json_str(j, "reason", st->reason ? st->reason : "");
	json_u64(j, "fence_s", st->fence_s);
	json_u64(j, "auto_resume_s", st->auto_resume_s);
	json_u64(j, "fence_left_ms", st->fence_left_ms);
	json_bool(j, "held", st->held);
	json_obj_end(j);
}

static void stats_json(struct json *j, const Ferry__Ctl__Stats *st)
{
	json_arr_begin(j, "vcpus");
	for (size_t i = 0; i < st->n_vcpus; i++) {
		const Ferry__Ctl__VcpuStats *v = st->vcpus[i];

		json_obj_begin(j, NULL);
		json_u64(j, "index", v->index);
		json_u64(j, "exits", v->exits);
		json_u64(j, "exits_io", v->exits_io);
		json_u64(j, "exits_hcall", v->exits_hcall);
		json_u64(j, "exits_intr", v->exits_intr);
		json_u64(j, "exits_ring_full", v->exits_ring_full);
		json_u64(j, "exits_other", v->exits_other);
		json_u64(j, "hcalls_console", v->hcalls_console);
		json_u64(j, "hcalls_sleep", v->hcalls_sleep);
		json_obj_end(j);
	}
	json_arr_end(j);
	json_obj_begin(j, "values");
	for (size_t i = 0; i < st->n_values; i++)
		json_u64(j, st->values[i]->name, st->values[i]->value);
	json_obj_end(j);
	json_obj_begin(j, "devices");
	for (size_t i = 0; i < st->n_devices; i++)
		json_u64(j, st->devices[i]->name, st->devices[i]->value);
	json_obj_end(j);
	if (st->dirty) {
		json_obj_begin(j, "dirty");
		json_str(j, "mode", st->dirty->mode);
		json_bool(j, "tracking", st->dirty->tracking);
		json_u64(j, "harvests", st->dirty->harvests);
		json_u64(j, "samples", st->dirty->samples);
		json_double(j, "pages_per_s", st->dirty->pages_per_s);
		json_u64(j, "window_ns", st->dirty->window_ns);
		json_u64(j, "monitor_pages", st->dirty->monitor_pages);
		json_obj_end(j);
	}
}

static void status_text(FILE *f, const Ferry__Ctl__Status *st)
{
	char mem[32];

	fprintf(f, "%s: %s, %u vCPU%s, %s, model %s, dirty tracking %s, up %.1f s, pid %d\n",
		st->name, state_name(st->state), st->vcpus, st->vcpus == 1 ? "" : "s",
		fmt_size(st->mem_bytes, mem, sizeof(mem)), st->cpu_model,
		st->dirty_mode, (double)st->uptime_ns / 1e9, st->pid);
	if (st->reason && *st->reason && st->state == FERRY__CTL__VM_STATE__VM_STATE_PAUSED)
		fprintf(f, "paused because: %s\n", st->reason);
	else if (st->held && st->state == FERRY__CTL__VM_STATE__VM_STATE_PAUSED)
		fprintf(f, "paused by the operator: vmon ctl resume runs it\n");
	if (st->auto_resume_s)
		fprintf(f, "auto-resume: a VM a disk paused is resumed once it can go on, "
			"looked at every %u s\n", st->auto_resume_s);
	if (st->fence_s)
		fprintf(f, "fence: stops the VM in %.1f s without a keepalive (--fence-s %u)\n",
			(double)st->fence_left_ms / 1e3, st->fence_s);
}

static void stats_text(FILE *f, const Ferry__Ctl__Stats *st)
{
	for (size_t i = 0; i < st->n_vcpus; i++) {
		const Ferry__Ctl__VcpuStats *v = st->vcpus[i];

		fprintf(f, "vcpu%u: exits %llu (io %llu, hypercall %llu, interrupted %llu, "
			"ring-full %llu, other %llu)\n", v->index,
			(unsigned long long)v->exits, (unsigned long long)v->exits_io,
			(unsigned long long)v->exits_hcall, (unsigned long long)v->exits_intr,
			(unsigned long long)v->exits_ring_full,
			(unsigned long long)v->exits_other);
	}
	for (size_t i = 0; i < st->n_values; i++)
		fprintf(f, "guest %s = %llu%s\n", st->values[i]->name,
			(unsigned long long)st->values[i]->value,
			st->values[i]->live ? " (live)" : "");
	for (size_t i = 0; i < st->n_devices; i++)
		fprintf(f, "device %s = %llu\n", st->devices[i]->name,
			(unsigned long long)st->devices[i]->value);
	if (st->dirty)
		fprintf(f, "dirty: %s, tracking %s, %.0f pages/s (%.1f MiB/s) over %.2f s, "
			"%llu harvests, %llu samples, %llu monitor-dirtied pages\n",
			st->dirty->mode, st->dirty->tracking ? "on" : "off",
			st->dirty->pages_per_s, st->dirty->pages_per_s * 4096.0 / 1048576.0,
			(double)st->dirty->window_ns / 1e9,
			(unsigned long long)st->dirty->harvests,
			(unsigned long long)st->dirty->samples,
			(unsigned long long)st->dirty->monitor_pages);
}

static const char *mig_state_name(Ferry__Ctl__MigState s)
{
	switch (s) {
	case FERRY__CTL__MIG_STATE__MIG_STATE_SETUP: return "setup";
	case FERRY__CTL__MIG_STATE__MIG_STATE_PRECOPY: return "precopy";
	case FERRY__CTL__MIG_STATE__MIG_STATE_SWITCHOVER: return "switchover";
	case FERRY__CTL__MIG_STATE__MIG_STATE_COMPLETED: return "completed";
	case FERRY__CTL__MIG_STATE__MIG_STATE_FAILED: return "failed";
	case FERRY__CTL__MIG_STATE__MIG_STATE_CANCELLED: return "cancelled";
	case FERRY__CTL__MIG_STATE__MIG_STATE_PREDICTED: return "predicted";
	default: return "none";
	}
}

static void migration_json(struct json *j, const Ferry__Ctl__MigrationInfo *m)
{
	json_obj_begin(j, "migration");
	json_str(j, "state", mig_state_name(m->state));
	json_str(j, "phase", m->phase);
	json_str(j, "message", m->message);
	json_str(j, "destination", m->destination);
	json_u64(j, "ram_bytes", m->ram_bytes);
	json_u64(j, "rounds", m->n_rounds);
	json_u64(j, "bytes", m->bytes);
	json_u64(j, "pages", m->pages);
	json_u64(j, "zero_pages", m->zero_pages);
	json_double(j, "bandwidth_Bps", m->bandwidth_bps);
	json_double(j, "dirty_pages_per_s", m->dirty_pages_per_s);
	json_u64(j, "throttle_pct", m->throttle_pct);
	json_double(j, "predicted_downtime_ms", m->predicted_downtime_ms);
	json_double(j, "downtime_ms", m->downtime_ms);
	json_double(j, "total_ms", (double)m->elapsed_ns / 1e6);
	json_double(j, "transfer_ms", (double)m->transfer_ns / 1e6);
	if (m->prediction && *m->prediction) {
		json_bool(j, "predicted_converges", m->predicted_converges);
		json_double(j, "predicted_total_ms", m->predicted_total_ms);
		json_str(j, "prediction", m->prediction);
	}
	if (m->downtime_target_ms) {  /* 0: no migration has run */
		json_obj_begin(j, "settings");
		json_u64(j, "downtime_target_ms", m->downtime_target_ms);
		json_u64(j, "bandwidth_cap_mbps", m->bandwidth_cap_mbps);
		json_u64(j, "timeout_s", m->timeout_s);
		json_str(j, "timeout_action", m->timeout_force ? "force" : "abort");
		json_u64(j, "changes", m->settings_changes);
		json_obj_end(j);
	}
	json_arr_begin(j, "round_stats");
	for (size_t i = 0; i < m->n_rounds; i++) {
		const Ferry__Ctl__MigRound *r = m->rounds[i];

		json_obj_begin(j, NULL);
		json_u64(j, "round", r->round);
		json_u64(j, "pages", r->pages);
		json_u64(j, "zero_pages", r->zero_pages);
		json_u64(j, "bytes", r->bytes);
		json_double(j, "duration_ms", (double)r->duration_ns / 1e6);
		json_double(j, "send_ms", (double)r->send_ns / 1e6);
		json_u64(j, "dirty_pages", r->dirty_pages);
		json_bool(j, "cut", r->cut);
		json_u64(j, "throttle_pct", r->throttle_pct);
		json_str(j, "decision", r->decision);
		json_obj_end(j);
	}
	json_arr_end(j);
	json_obj_begin(j, "timeline_ms");
	for (size_t i = 0; i < m->n_timeline; i++)
		json_double(j, m->timeline[i]->name, (double)m->timeline[i]->at_ns / 1e6);
	json_obj_end(j);
	json_obj_end(j);
}

static void migration_text(FILE *f, const Ferry__Ctl__MigrationInfo *m)
{
	char sz[32];
	double secs = (double)m->transfer_ns / 1e9;

	if (m->state == FERRY__CTL__MIG_STATE__MIG_STATE_PREDICTED) {
		fprintf(f, "migration to %s (dry run): %s\n", m->destination, m->prediction);
		return;
	}
	fprintf(f, "migration to %s: %s after %.1f ms (phase %s)\n", m->destination,
		mig_state_name(m->state), (double)m->elapsed_ns / 1e6, m->phase);
	fprintf(f, "  sent %s in %.1f ms (%llu pages, %llu zero) over %zu rounds, %.0f MB/s\n",
		fmt_size(m->bytes, sz, sizeof(sz)), (double)m->transfer_ns / 1e6,
		(unsigned long long)m->pages, (unsigned long long)m->zero_pages, m->n_rounds,
		secs > 0 ? (double)m->bytes / secs / 1e6 : 0);
	if (m->state == FERRY__CTL__MIG_STATE__MIG_STATE_COMPLETED && m->downtime_ms > 0)
		fprintf(f, "  downtime %.2f ms measured (source pause to destination resume), "
			"%.2f ms predicted\n", m->downtime_ms, m->predicted_downtime_ms);
	else if (m->state == FERRY__CTL__MIG_STATE__MIG_STATE_COMPLETED)
		fprintf(f, "  downtime not measured: %s\n", m->message);
	for (size_t i = 0; i < m->n_rounds; i++) {
		const Ferry__Ctl__MigRound *r = m->rounds[i];

		fprintf(f, "  round %u: %llu pages (%llu zero) in %.1f ms (%.1f sending), "
			"%llu %s%s: %s\n",
			r->round, (unsigned long long)r->pages, (unsigned long long)r->zero_pages,
			(double)r->duration_ns / 1e6, (double)r->send_ns / 1e6,
			(unsigned long long)r->dirty_pages,
			r->cut ? "left unsent (cut short at the time limit)" : "dirtied",
			r->throttle_pct ? " (throttled)" : "", r->decision);
	}
	if (m->downtime_target_ms) {
		char cap[32];

		fprintf(f, "  settings: downtime target %llu ms, bandwidth cap %s, timeout %llu s "
			"(then %s)%s\n", (unsigned long long)m->downtime_target_ms,
			fmt_cap_mbps(m->bandwidth_cap_mbps, cap, sizeof(cap)),
			(unsigned long long)m->timeout_s, m->timeout_force ? "force" : "abort",
			m->settings_changes ? ", changed while it ran" : "");
	}
	for (size_t i = 0; i < m->n_timeline; i++)
		fprintf(f, "%s%s %.1f%s", i ? ", " : "  timeline (ms from the start): ",
			m->timeline[i]->name, (double)m->timeline[i]->at_ns / 1e6,
			i + 1 == m->n_timeline ? "\n" : "");
	if (m->state != FERRY__CTL__MIG_STATE__MIG_STATE_COMPLETED && m->message && *m->message)
		fprintf(f, "  %s\n", m->message);
}

void ctl_print(FILE *f, const char *cmd, const Ferry__Ctl__Response *resp, bool json)
{
	const Ferry__Ctl__Status *st = resp->stats ? resp->stats->status : resp->status;

	if (json) {
		struct json j;

		json_init(&j, f);
		json_obj_begin(&j, NULL);
		json_str(&j, "command", cmd);
		json_bool(&j, "ok", resp->error == 0);
		if (resp->error) {
			json_i64(&j, "error", resp->error);
			json_str(&j, "message", resp->message);
		}
		if (st)
			status_json(&j, st);
		if (resp->stats)
			stats_json(&j, resp->stats);
		if (resp->migration)
			migration_json(&j, resp->migration);
		if (resp->save) {
			json_obj_begin(&j, "save");
			json_str(&j, "path", resp->save->path);
			json_u64(&j, "bytes", resp->save->bytes);
			json_u64(&j, "pages", resp->save->pages);
			json_u64(&j, "zero_pages", resp->save->zero_pages);
			json_u64(&j, "duration_ns", resp->save->duration_ns);
			json_obj_end(&j);
		}
		json_obj_end(&j);
		json_end(&j);
		return;
	}
	if (resp->migration) {
		migration_text(f, resp->migration);
		return;
	}
	if (st)
		status_text(f, st);
	if (resp->stats)
		stats_text(f, resp->stats);
	if (resp->save) {
		char sz[32];

		fprintf(f, "saved %s: %s, %llu pages (%llu zero), VM paused %.1f ms\n",
			resp->save->path, fmt_size(resp->save->bytes, sz, sizeof(sz)),
			(unsigned long long)resp->save->pages,
			(unsigned long long)resp->save->zero_pages,
			(double)resp->save->duration_ns / 1e6);
	}
}
