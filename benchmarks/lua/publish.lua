-- POST /events with workload events, each with a fresh id.
-- Arguments: <events file> <events per request> <run tag>
-- The events file holds one JSON event per line with the id "@ID@".
-- One event per request is sent as application/cloudevents+json, more as a
-- batch (application/cloudevents-batch+json).

local threads = {}
local counter = 1

function setup(thread)
   thread:set("thread_number", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   parts = {}
   for line in io.lines(args[1]) do
      local first, last = string.find(line, "@ID@", 1, true)
      parts[#parts + 1] = {string.sub(line, 1, first - 1), string.sub(line, last + 1)}
   end
   per_request = tonumber(args[2])
   tag = args[3] .. "-" .. thread_number .. "-"
   if per_request == 1 then
      headers = {["Content-Type"] = "application/cloudevents+json"}
   else
      headers = {["Content-Type"] = "application/cloudevents-batch+json"}
   end
end

function request()
   local pieces = {}
   for i = 1, per_request do
      local part = parts[(counter % #parts) + 1]
      pieces[i] = part[1] .. tag .. counter .. part[2]
      counter = counter + 1
   end
   local body
   if per_request == 1 then
      body = pieces[1]
   else
      body = "[" .. table.concat(pieces, ",") .. "]"
   end
   return wrk.format("POST", "/events", headers, body)
end
