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
	if (st->dirty) {
		json_obj_begin(j, "dirty");
		json_str(j, "mode", st->dirty->mode);
		json_bool(j, "tracking", st->dirty->tracking);
		json_u64(j, "harvests", st->dirty->harvests);
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
	if (st->dirty)
		fprintf(f, "dirty: %s, tracking %s, %.0f pages/s (%.1f MiB/s) over %.2f s, "
			"%llu harvests, %llu monitor-dirtied pages\n",
			st->dirty->mode, st->dirty->tracking ? "on" : "off",
			st->dirty->pages_per_s, st->dirty->pages_per_s * 4096.0 / 1048576.0,
			(double)st->dirty->window_ns / 1e9,
			(unsigned long long)st->dirty->harvests,
			(unsigned long long)st->dirty->monitor_pages);
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
